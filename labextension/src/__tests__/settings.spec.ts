import { describe, expect, it } from 'vitest';

import type { OsmoEvent } from '../api';
import { heldNews } from '../held';
import { DEFAULT_SETTINGS, MIN_REFRESH_SECONDS, readSettings } from '../settings';
import schema from '../../schema/plugin.json';

describe('settings', () => {
  it('reads what the registry holds, and falls back per value on a wrong type', () => {
    expect(readSettings({ defaultPool: ' gpu ', refreshSeconds: 30, notifyHeld: false })).toEqual({
      defaultPool: 'gpu',
      refreshSeconds: 30,
      notifyHeld: false
    });
    expect(readSettings({ defaultPool: 3, refreshSeconds: '10', notifyHeld: 'no' })).toEqual(
      DEFAULT_SETTINGS
    );
    expect(readSettings({ refreshSeconds: -1 }).refreshSeconds).toBe(
      DEFAULT_SETTINGS.refreshSeconds
    );
    expect(readSettings({ refreshSeconds: 0 }).refreshSeconds).toBe(0); // never
    expect(readSettings({ refreshSeconds: 1 }).refreshSeconds).toBe(MIN_REFRESH_SECONDS);
  });

  it('has the schema JupyterLab shows, with the same defaults', () => {
    const defaults = Object.fromEntries(
      Object.entries(schema.properties as Record<string, { default: unknown }>).map(([k, v]) => [
        k,
        v.default
      ])
    );
    expect(defaults).toEqual(DEFAULT_SETTINGS);
  });
});

describe('held-task news', () => {
  const hold = (kind: string, ts = 100, id = 10): OsmoEvent => ({
    id,
    ts,
    type: 'task.hold',
    version: 1,
    workflow_id: 'train-1',
    group_name: null,
    task: 'fit',
    retry_id: 0,
    status: 'RUNNING',
    payload: { hold: kind }
  });

  it('says which task waits and why, for news only', () => {
    const opened = { lastEventId: 5, at: 50 };
    expect(heldNews(hold('debug'), opened)).toBe('train-1/fit is held for debugging');
    expect(heldNews(hold('interactive'), opened)).toBe('train-1/fit is waiting for you');
    expect(heldNews(hold('done'), opened)).toBeNull(); // the wait ended
    expect(heldNews({ ...hold('debug'), type: 'task.status' }, opened)).toBeNull();
    // stored before the panel opened: by its id, whatever the clocks say
    expect(heldNews(hold('debug', 100, 5), opened)).toBeNull();
    expect(heldNews(hold('debug', 10, 6), opened)).toBe('train-1/fit is held for debugging');
    // the id was not known: by the time
    expect(heldNews(hold('debug', 10), { lastEventId: 0, at: 50 })).toBeNull();
    expect(heldNews(hold('debug', 60), { lastEventId: 0, at: 50 })).not.toBeNull();
  });
});
