import { describe, expect, it } from 'vitest';

import { ApiError, OsmoClient, relocated, SocketLike, Transport } from '../api';

/** A scripted transport: answers by path, records requests and sockets. */
class Script implements Transport {
  requests: Array<{ path: string; init?: RequestInit }> = [];
  sockets: Array<{ path: string; socket: FakeSocket }> = [];
  constructor(private answer: (path: string) => Response | Error) {}
  async fetch(path: string, init?: RequestInit): Promise<Response> {
    this.requests.push({ path, init });
    const a = this.answer(path);
    if (a instanceof Error) {
      throw a;
    }
    return a;
  }
  socket(path: string): SocketLike {
    const socket = new FakeSocket();
    this.sockets.push({ path, socket });
    return socket;
  }
}

class FakeSocket implements SocketLike {
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  closed: Array<number | undefined> = [];
  close(code?: number): void {
    this.closed.push(code);
  }
  send(msg: unknown): void {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });

describe('OsmoClient requests', () => {
  it('builds paths and query strings, encoding ids', async () => {
    const t = new Script(() => json([]));
    const c = new OsmoClient(t);
    await c.listWorkflows({ status: ['RUNNING', 'PENDING'], pool: 'gpu', limit: 5 });
    await c.logs('a b', 't/1', { retryId: 1, start: 0 });
    await c.listWorkflows();
    expect(t.requests.map(r => r.path)).toEqual([
      'workflows?status=RUNNING%2CPENDING&pool=gpu&limit=5',
      'workflows/a%20b/tasks/t%2F1/logs?retry_id=1&start=0',
      'workflows'
    ]);
  });

  it('posts the spec as JSON on submit and nothing on cancel', async () => {
    const t = new Script(p =>
      json(p === 'workflows' ? { id: 'hello-1' } : { id: 'x', status: 'FAILED_CANCELED' })
    );
    const c = new OsmoClient(t);
    expect(await c.submit('workflow: {}', { pool: 'local' })).toEqual({ id: 'hello-1' });
    await c.cancel('hello-1');
    expect(t.requests[0].init?.method).toBe('POST');
    expect(JSON.parse(String(t.requests[0].init?.body))).toEqual({
      spec: 'workflow: {}',
      pool: 'local'
    });
    expect(t.requests[1]).toMatchObject({
      path: 'workflows/hello-1/cancel',
      init: { method: 'POST', body: undefined }
    });
  });

  it("turns an error answer into an ApiError with the server's message, reason and details", async () => {
    const body = {
      message: "invalid workflow spec: unknown field 'comand'",
      reason: 'invalid spec',
      details: [{ field: 'workflow.tasks[0].comand', line: 5 }]
    };
    const c = new OsmoClient(new Script(() => json(body, 422)));
    const err = await c.submit('x').catch(e => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.message).toBe(body.message);
    expect(err.status).toBe(422);
    expect(err.reason).toBe('invalid spec');
    expect(err.details).toEqual(body.details);
  });

  it("posts done / retry of a held task; a 409 keeps the server's message", async () => {
    const t = new Script(p =>
      p.endsWith('/done')
        ? json({ id: 'i-1', task: 'a b', retry_id: 0, hold: 'done' })
        : json({ message: 'task main of i-1 is not held for debugging', reason: 'conflict' }, 409)
    );
    const c = new OsmoClient(t);
    expect(await c.done('i-1', 'a b')).toEqual({
      id: 'i-1',
      task: 'a b',
      retry_id: 0,
      hold: 'done'
    });
    const err = await c.retryTask('i-1', 'main').catch(e => e);
    expect(t.requests.map(r => [r.path, r.init?.method])).toEqual([
      ['workflows/i-1/tasks/a%20b/done', 'POST'],
      ['workflows/i-1/tasks/main/retry', 'POST']
    ]);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({
      status: 409,
      message: 'task main of i-1 is not held for debugging'
    });
    expect(OsmoClient.taskPath('a b', 't/1')).toBe('workflows/a%20b/tasks/t%2F1/');
  });

  it("names the submitted file in place of the server's <spec> locations", () => {
    const e = new ApiError(
      '<spec>:5:5: workflow.tasks[0].comand: unknown field\n<spec>:4:5: missing command',
      400,
      'invalid spec',
      [
        { file: '<spec>', line: 5, column: 5, message: 'unknown field' },
        { file: null, line: 4, message: 'missing command' },
        { file: 'other.yaml', line: 1, message: 'included' }
      ]
    );
    const r = relocated(e, 'work/bad.yaml');
    expect(r.message).toBe(
      'work/bad.yaml:5:5: workflow.tasks[0].comand: unknown field\nwork/bad.yaml:4:5: missing command'
    );
    expect(r.details.map(d => d.file)).toEqual(['work/bad.yaml', 'work/bad.yaml', 'other.yaml']);
    expect(r).toMatchObject({ status: 400, reason: 'invalid spec' });
    const conflict = new ApiError('<spec> busy', 409);
    expect(relocated(conflict, 'x.yaml')).toBe(conflict);
  });

  it('falls back to the HTTP status when the error body is not JSON', async () => {
    const c = new OsmoClient(
      new Script(
        () => new Response('<html>bad gateway</html>', { status: 502, statusText: 'Bad Gateway' })
      )
    );
    const err = await c.pools().catch(e => e);
    expect(err.message).toBe('502 Bad Gateway');
  });

  it('says the server cannot be reached on a network error', async () => {
    const c = new OsmoClient(new Script(() => new TypeError('Failed to fetch')));
    const err = await c.me().catch(e => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(0);
    expect(err.message).toContain('cannot reach the osmo server: Failed to fetch');
  });

  it('refuses a 200 answer that is not JSON', async () => {
    const c = new OsmoClient(new Script(() => new Response('<html>login</html>', { status: 200 })));
    await expect(c.pools()).rejects.toThrow(/not JSON/);
  });
});

describe('EventStream', () => {
  const ev = (id: number | null, type = 'task.status') => ({
    id,
    ts: 1,
    type,
    version: 1,
    workflow_id: 'w-1',
    group_name: 't',
    task: 't',
    retry_id: 0,
    status: 'RUNNING',
    payload: {}
  });

  it('reconnects after a lost connection, resuming after the last event id, without duplicates', () => {
    const t = new Script(() => json(null));
    const timers: Array<[() => void, number]> = [];
    const seen: Array<number | null> = [];
    const states: boolean[] = [];
    let resyncs = 0;
    const stream = new OsmoClient(t).events(
      {
        onEvent: e => seen.push(e.id),
        onResync: () => resyncs++,
        onConnection: up => states.push(up)
      },
      { logs: false, backoff: [10, 20], setTimer: (fn, ms) => timers.push([fn, ms]) }
    );
    expect(t.sockets[0].path).toBe('events?logs=false');
    const s0 = t.sockets[0].socket;
    s0.onopen?.({});
    s0.send(ev(1));
    s0.send(ev(2));
    s0.send(ev(null, 'task.log')); // live-only: no id, always delivered
    s0.send({ type: 'resync', dropped: 3 });
    s0.onclose?.({ code: 1006, reason: '' });
    expect(timers.map(x => x[1])).toEqual([10]);
    timers[0][0]();
    expect(t.sockets[1].path).toBe('events?logs=false&after=2');
    const s1 = t.sockets[1].socket;
    s1.send(ev(2)); // replayed across the switch: skipped
    s1.send(ev(3));
    s1.onclose?.({ code: 1006, reason: '' });
    s1.onclose?.({ code: 1006, reason: '' }); // a second close of the same socket is ignored
    expect(timers.map(x => x[1])).toEqual([10, 20]);
    expect(seen).toEqual([1, 2, null, 3]);
    expect(resyncs).toBe(1);
    expect(states).toEqual([true, false, false]);
    stream.close();
    timers[1][0]();
    expect(t.sockets).toHaveLength(2); // closed: no reconnect
  });

  it('filters by workflow and starts after a given id', () => {
    const t = new Script(() => json(null));
    new OsmoClient(t).events({ onEvent: () => undefined }, { workflowId: 'w 1', after: 7 });
    expect(t.sockets[0].path).toBe('events?workflow_id=w+1&after=7');
  });
});

describe('followLogs', () => {
  it('delivers lines, attempts and the end; closing by the peer after the end is no error', () => {
    const t = new Script(() => json(null));
    const lines: string[] = [];
    const attempts: number[] = [];
    const ends: string[] = [];
    const errors: string[] = [];
    const f = new OsmoClient(t).followLogs('w-1', 'task1', {
      onLine: l => lines.push(l.text),
      onAttempt: r => attempts.push(r),
      onEnd: s => ends.push(s),
      onError: e => errors.push(e.message)
    });
    expect(t.sockets[0].path).toBe('workflows/w-1/tasks/task1/logs/follow?batch=true');
    const s = t.sockets[0].socket;
    s.send({ type: 'log', n: 1, ts: 1, stream: 'stdout', text: 'hello' });
    s.send({
      type: 'lines',
      lines: [
        { n: 2, ts: 1, stream: 'stdout', text: 'one' },
        { n: 3, ts: 1, stream: 'stdout', text: 'two' }
      ]
    });
    s.send({ type: 'attempt', retry_id: 1 });
    s.send({ type: 'log', n: 1, ts: 2, stream: 'stderr', text: 'again' });
    s.send({ type: 'end', status: 'COMPLETED', retry_id: 1 });
    s.onclose?.({ code: 1000, reason: 'task finished' });
    expect(lines).toEqual(['hello', 'one', 'two', 'again']);
    expect(attempts).toEqual([1]);
    expect(ends).toEqual(['COMPLETED']);
    expect(errors).toEqual([]);
    f.close();
    expect(s.closed).toEqual([1000]);
  });

  it('reports a stream that breaks before the end', () => {
    const t = new Script(() => json(null));
    const errors: string[] = [];
    new OsmoClient(t).followLogs('w', 't', {
      onLine: () => undefined,
      onError: e => errors.push(e.message)
    });
    t.sockets[0].socket.onclose?.({ code: 1011, reason: 'store unavailable' });
    expect(errors).toEqual(['log stream closed: store unavailable']);
  });
});
