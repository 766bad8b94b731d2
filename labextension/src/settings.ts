/**
 * The panel's user settings, kept in JupyterLab's settings registry (schema/plugin.json; Settings
 * → Settings Editor → OSMO). Read here from the registry's composite values, so a value of the
 * wrong type (a hand-edited settings file) falls back to its default instead of breaking.
 */

export interface PanelSettings {
  /** The pool a workflow submitted from Lab goes to; '' = the spec's, else the server's default. */
  defaultPool: string;
  /** Seconds between re-reads of the list over REST (events keep it live); 0 = never. */
  refreshSeconds: number;
  /** A notification when a task becomes held, waiting for its user. */
  notifyHeld: boolean;
}

export const DEFAULT_SETTINGS: PanelSettings = {
  defaultPool: '',
  refreshSeconds: 60,
  notifyHeld: true
};

/** The smallest refresh interval: a shorter one would only load the server. */
export const MIN_REFRESH_SECONDS = 5;

export function readSettings(composite: Record<string, unknown>): PanelSettings {
  const pool = composite.defaultPool;
  const refresh = composite.refreshSeconds;
  const notify = composite.notifyHeld;
  return {
    defaultPool: typeof pool === 'string' ? pool.trim() : DEFAULT_SETTINGS.defaultPool,
    refreshSeconds:
      typeof refresh === 'number' && Number.isFinite(refresh) && refresh >= 0
        ? refresh && Math.max(MIN_REFRESH_SECONDS, refresh)
        : DEFAULT_SETTINGS.refreshSeconds,
    notifyHeld: typeof notify === 'boolean' ? notify : DEFAULT_SETTINGS.notifyHeld
  };
}
