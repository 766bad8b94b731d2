/**
 * The osmo REST + WebSocket API (`/osmo/api/v1`, documented at `.../openapi.json`).
 *
 * One client for every call. It knows nothing of JupyterLab: a `Transport` (built in index.ts
 * from the server connection settings, which add the token and XSRF header) does the I/O, so
 * the client is unit-tested with a scripted transport.
 */

/** A problem the server reported, with its own `message` (shown to the user as is). */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly reason: string | null = null,
    readonly details: Array<Record<string, unknown>> = []
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The part of a browser WebSocket the client uses. */
export interface SocketLike {
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  close(code?: number, reason?: string): void;
}

export interface Transport {
  /** An HTTP request to `path`, relative to the API root (`workflows?limit=5`). */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  /** A WebSocket to `path`, relative to the API root. */
  socket(path: string): SocketLike;
}

export interface WorkflowRow {
  id: string;
  name: string;
  user: string;
  pool: string;
  status: string;
  submit_time: number | null;
  start_time: number | null;
  end_time: number | null;
  message: string | null;
}

export interface TaskAttempt {
  workflow_id: string;
  name: string;
  retry_id: number;
  group_name: string | null;
  status: string;
  exit_code: number | null;
  node: string | null;
  alloc: { cpu?: number; memory?: number; gpus?: unknown[] } | null;
  create_time: number | null;
  start_time: number | null;
  end_time: number | null;
  message: string | null;
  cancel_reason?: string | null;
  /** A held attempt (command ended, environment kept): interactive, debug; done/retry once decided. */
  hold?: 'interactive' | 'debug' | 'done' | 'retry' | null;
  /** When the hold times out (epoch seconds). */
  hold_until?: number | null;
  /** An interactive task waiting for `done` (status RUNNING). */
  waiting_for_user?: boolean;
  /** A failed task kept up for debugging until `retry`, cancel or its timeout. */
  held_for_debugging?: boolean;
}

/** What a running command uses, as its agent last sampled it. */
export interface Usage {
  ts: number;
  cpu: number;
  cpu_seconds: number;
  memory: number;
  memory_peak: number;
  procs: number;
}

export interface TaskInfo extends TaskAttempt {
  usage?: Usage | null;
  attempts: TaskAttempt[];
}

export interface WorkflowDetail extends WorkflowRow {
  groups: Array<{ name: string; status: string; message: string | null }>;
  tasks: TaskAttempt[];
}

export interface WorkflowSpec {
  original: string;
  rendered: string;
  /** The validated spec as JSON text: tasks/groups with inputs, outputs, resources. */
  spec: string;
}

/** `done` / `retry` of a held task: the decision is recorded and on its way. */
export interface HoldResponse {
  id: string;
  task: string;
  /** done: the attempt marked done; retry: the new attempt. */
  retry_id: number;
  hold: 'done' | 'retry';
}

export interface LogLine {
  n: number;
  ts: number;
  stream: string;
  text: string;
}

export interface OsmoEvent {
  id: number | null;
  ts: number;
  type: string;
  workflow_id: string;
  group_name: string | null;
  task: string | null;
  retry_id: number | null;
  status: string | null;
  payload: Record<string, unknown>;
}

export interface NodeUsage {
  backend: string;
  node: string;
  arch?: string | null;
  cpu: number;
  free_cpu: number;
  memory: number;
  free_memory: number;
  gpus: unknown[];
  free_gpus: unknown[];
  pools?: string[];
}

export interface PoolInfo {
  name: string;
  backend: string;
  default_platform: string;
  platforms: Record<string, { name: string; arch?: string | null }>;
  nodes: NodeUsage[];
}

export interface ListQuery {
  status?: string[];
  pool?: string;
  name?: string;
  limit?: number;
}

export interface SubmitOptions {
  pool?: string;
  set_values?: Record<string, unknown>;
}

const q = (s: string) => encodeURIComponent(s);

function query(params: Record<string, string | number | boolean | undefined>): string {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== '') {
      search.set(k, String(v));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

export class OsmoClient {
  constructor(readonly transport: Transport) {}

  /** JSON from `path`; any non-2xx answer becomes an ApiError with the server's message. */
  async request<T>(path: string, init?: RequestInit): Promise<T> {
    let response: Response;
    try {
      response = await this.transport.fetch(path, init);
    } catch (e) {
      throw new ApiError(`cannot reach the osmo server: ${(e as Error).message ?? e}`, 0);
    }
    const text = await response.text();
    let body: unknown = null;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = null;
      }
    }
    if (!response.ok) {
      const b = (body ?? {}) as { message?: string; reason?: string; details?: [] };
      const message = b.message || `${response.status} ${response.statusText}`.trim();
      throw new ApiError(message, response.status, b.reason ?? null, b.details ?? []);
    }
    if (text && body === null) {
      throw new ApiError(`the osmo server sent something that is not JSON for ${path}`, 502);
    }
    return body as T;
  }

  private post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>(path, {
      method: 'POST',
      body: body === undefined ? undefined : JSON.stringify(body)
    });
  }

  me(): Promise<{ name: string; role: string }> {
    return this.request('me');
  }

  listWorkflows(filter: ListQuery = {}): Promise<WorkflowRow[]> {
    return this.request(
      'workflows' +
        query({
          status: filter.status?.join(','),
          pool: filter.pool,
          name: filter.name,
          limit: filter.limit
        })
    );
  }

  workflow(id: string): Promise<WorkflowDetail> {
    return this.request(`workflows/${q(id)}`);
  }

  spec(id: string): Promise<WorkflowSpec> {
    return this.request(`workflows/${q(id)}/spec`);
  }

  task(id: string, task: string): Promise<TaskInfo> {
    return this.request(`workflows/${q(id)}/tasks/${q(task)}`);
  }

  logs(
    id: string,
    task: string,
    opts: { retryId?: number; start?: number; limit?: number; tail?: number } = {}
  ): Promise<LogLine[]> {
    const params = query({
      retry_id: opts.retryId,
      start: opts.start,
      limit: opts.limit,
      tail: opts.tail
    });
    return this.request(`workflows/${q(id)}/tasks/${q(task)}/logs${params}`);
  }

  submit(spec: string, opts: SubmitOptions = {}): Promise<{ id: string }> {
    return this.post('workflows', { spec, ...opts });
  }

  cancel(id: string): Promise<{ id: string; status: string }> {
    return this.post(`workflows/${q(id)}/cancel`);
  }

  restart(id: string): Promise<{ id: string; restarted: string }> {
    return this.post(`workflows/${q(id)}/restart`);
  }

  /** An interactive task waiting for its user is done (409 unless it is waiting). */
  done(id: string, task: string): Promise<HoldResponse> {
    return this.post(`workflows/${q(id)}/tasks/${q(task)}/done`);
  }

  /** Run a task held for debugging again as a new attempt (409 unless it is held). */
  retryTask(id: string, task: string): Promise<HoldResponse> {
    return this.post(`workflows/${q(id)}/tasks/${q(task)}/retry`);
  }

  /** The API path of a task's own routes (terminals, proxy), relative to the API root. */
  static taskPath(id: string, task: string): string {
    return `workflows/${q(id)}/tasks/${q(task)}/`;
  }

  pools(): Promise<PoolInfo[]> {
    return this.request('pools');
  }

  resources(): Promise<NodeUsage[]> {
    return this.request('resources');
  }

  /** The events stream (see EventStream): stored events first, then live ones. */
  events(handlers: EventHandlers, opts: EventStreamOptions = {}): EventStream {
    return new EventStream(this.transport, handlers, opts);
  }

  /** A task's log, stored lines then live ones, across its attempts, until it ends. */
  followLogs(id: string, task: string, handlers: LogHandlers, start = 0): LogFollow {
    const socket = this.transport.socket(
      `workflows/${q(id)}/tasks/${q(task)}/logs/follow${query({ start: start || undefined })}`
    );
    let ended = false;
    socket.onmessage = ev => {
      const msg = parse(ev.data);
      if (msg?.type === 'log') {
        handlers.onLine(msg as unknown as LogLine);
      } else if (msg?.type === 'attempt') {
        handlers.onAttempt?.(Number(msg.retry_id));
      } else if (msg?.type === 'end') {
        ended = true;
        handlers.onEnd?.(String(msg.status), Number(msg.retry_id));
      }
    };
    socket.onclose = ev => {
      if (!ended && ev.code !== 1000) {
        handlers.onError?.(
          new ApiError(`log stream closed: ${ev.reason || `code ${ev.code}`}`, ev.code)
        );
      }
    };
    return { close: () => socket.close(1000, 'closed by the panel') };
  }
}

export interface LogHandlers {
  onLine(line: LogLine): void;
  onAttempt?(retryId: number): void;
  onEnd?(status: string, retryId: number): void;
  onError?(error: ApiError): void;
}

export interface LogFollow {
  close(): void;
}

export interface EventHandlers {
  onEvent(ev: OsmoEvent): void;
  /** The server dropped events this client was too slow for: re-read state. */
  onResync?(): void;
  /** Connected (true) or lost, reconnecting (false). */
  onConnection?(connected: boolean): void;
}

export interface EventStreamOptions {
  workflowId?: string;
  logs?: boolean;
  /** Resume after this event id. */
  after?: number;
  /** Reconnect delays in ms, the last one repeating (bounded backoff). */
  backoff?: number[];
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

function parse(data: unknown): Record<string, unknown> | null {
  try {
    const v = JSON.parse(String(data));
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * The events WebSocket, kept open: on a lost connection it reconnects with `after` = the last
 * event id seen, so no stored event is missed or applied twice.
 */
export class EventStream {
  private socket: SocketLike | null = null;
  private timer: unknown = null;
  private failures = 0;
  private closed = false;
  lastId: number;

  constructor(
    private transport: Transport,
    private handlers: EventHandlers,
    private opts: EventStreamOptions = {}
  ) {
    this.lastId = opts.after ?? 0;
    this.connect();
  }

  private connect(): void {
    const path =
      'events' +
      query({
        workflow_id: this.opts.workflowId,
        logs: this.opts.logs === undefined ? undefined : String(this.opts.logs),
        after: this.lastId || undefined
      });
    const socket = (this.socket = this.transport.socket(path));
    socket.onopen = () => {
      this.failures = 0;
      this.handlers.onConnection?.(true);
    };
    socket.onmessage = ev => {
      const msg = parse(ev.data);
      if (!msg) {
        return;
      }
      if (msg.type === 'resync') {
        this.handlers.onResync?.();
        return;
      }
      const event = msg as unknown as OsmoEvent;
      if (typeof event.id === 'number') {
        if (event.id <= this.lastId) {
          return; // already applied before a reconnect
        }
        this.lastId = event.id;
      }
      this.handlers.onEvent(event);
    };
    socket.onclose = () => {
      if (this.socket !== socket || this.closed) {
        return;
      }
      this.socket = null;
      this.handlers.onConnection?.(false);
      const backoff = this.opts.backoff ?? [500, 1000, 2000, 5000, 10000];
      const delay = backoff[Math.min(this.failures, backoff.length - 1)];
      this.failures += 1;
      const setTimer = this.opts.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
      this.timer = setTimer(() => {
        this.timer = null;
        if (!this.closed) {
          this.connect();
        }
      }, delay);
    };
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) {
      (this.opts.clearTimer ?? (h => clearTimeout(h as ReturnType<typeof setTimeout>)))(this.timer);
    }
    this.socket?.close(1000, 'closed by the panel');
    this.socket = null;
  }
}

/**
 * The server names problems of a submitted spec `<spec>:LINE:COL`; a spec read from a file is
 * the user's file, so its path is shown instead (as the Python clients do).
 */
export function relocated(error: ApiError, file: string): ApiError {
  if (error.status !== 400 && error.status !== 422) {
    return error;
  }
  const message = error.message.split('<spec>').join(file);
  const details = error.details.map(d =>
    d.file === undefined || d.file === null || d.file === '<spec>' ? { ...d, file } : d
  );
  return new ApiError(message, error.status, error.reason, details);
}
