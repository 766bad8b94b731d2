/**
 * What the submit dialog asks after its file — the pool, the priority and `--set KEY=VALUE`
 * values, as `osmo workflow submit` takes them — and what it remembers: pool and priority from
 * the last submit, values from the last submit of the same file, the folder the file picker
 * opens in. The memory lives in JupyterLab's state database, so a reload of the same workspace
 * keeps it. The dialog itself is submitdialog.ts.
 */
import type { SubmitOptions } from './api';

export const PRIORITIES = ['HIGH', 'NORMAL', 'LOW'] as const;
export type Priority = (typeof PRIORITIES)[number];

/** What the dialog asks; `values` as typed, one KEY=VALUE per line. */
export interface SubmitChoices {
  pool: string;
  priority: Priority;
  values: string;
}

/** A type, not an interface: the state database takes it as a JSON object. */
export type SubmitMemory = {
  folder: string;
  pool: string;
  /** The settings' default pool when `pool` was chosen: a setting changed since wins. */
  poolSetting: string;
  priority: Priority;
  /** The values last submitted with each file, by path (the newest last). */
  values: Record<string, string>;
};

/** The state database's key. */
export const SUBMIT_STATE = '@osmo-jupyter/labextension:submit';
/** The files whose values are kept: the oldest goes first. */
export const REMEMBERED_FILES = 50;

const str = (v: unknown): string => (typeof v === 'string' ? v : '');

/** The stored memory; anything missing or of a wrong type (another version wrote it) is empty. */
export function readMemory(raw: unknown): SubmitMemory {
  const m = raw && typeof raw === 'object' ? (raw as Record<string, unknown>) : {};
  const values = m.values && typeof m.values === 'object' ? m.values : {};
  return {
    folder: str(m.folder),
    pool: str(m.pool),
    poolSetting: str(m.poolSetting),
    priority: PRIORITIES.includes(m.priority as Priority) ? (m.priority as Priority) : 'NORMAL',
    values: Object.fromEntries(
      Object.entries(values as Record<string, unknown>).filter(([, v]) => typeof v === 'string')
    ) as Record<string, string>
  };
}

/** The dialog's first values for `path`: what was used last, but the settings' pool when it
 * changed since. */
export function initialChoices(
  memory: SubmitMemory,
  path: string,
  defaultPool: string
): SubmitChoices {
  return {
    pool: memory.poolSetting === defaultPool ? memory.pool || defaultPool : defaultPool,
    priority: memory.priority,
    values: memory.values[path] ?? ''
  };
}

/** The memory after `path` was submitted with `choices` (`defaultPool`: the settings'). */
export function remember(
  memory: SubmitMemory,
  path: string,
  choices: SubmitChoices,
  defaultPool: string
): SubmitMemory {
  const values = Object.fromEntries(Object.entries(memory.values).filter(([p]) => p !== path));
  if (choices.values.trim()) {
    values[path] = choices.values;
  }
  const kept = Object.entries(values).slice(-REMEMBERED_FILES);
  const slash = path.lastIndexOf('/');
  return {
    folder: slash > 0 ? path.slice(0, slash) : '',
    pool: choices.pool,
    poolSetting: defaultPool,
    priority: choices.priority,
    values: Object.fromEntries(kept)
  };
}

/** A `--set` value as the CLI reads it (osmo_core/spec/loader.py `set_value`, after OSMO): an
 * integer, else a decimal number, else the text. */
export function setValue(text: string): number | string {
  const t = text.trim();
  if (/^[+-]?\d+$/.test(t) || /^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$/.test(t)) {
    return Number(t);
  }
  return text;
}

/** `KEY=VALUE` lines (blank lines and `# comments` skipped) as `set_values`; each other line
 * is a problem naming it. */
export function parseSetValues(text: string): {
  values: Record<string, number | string>;
  problems: string[];
} {
  const values: Record<string, number | string> = {};
  const problems: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) {
      return;
    }
    const eq = line.indexOf('=');
    if (eq < 1 || !line.slice(0, eq).trim()) {
      problems.push(`line ${i + 1}: "${line}" is not KEY=VALUE`);
      return;
    }
    values[line.slice(0, eq).trim()] = setValue(line.slice(eq + 1));
  });
  return { values, problems };
}

/** The request's options for `choices` (already checked by parseSetValues). */
export function submitOptions(choices: SubmitChoices): SubmitOptions {
  const { values } = parseSetValues(choices.values);
  return {
    ...(choices.pool ? { pool: choices.pool } : {}),
    priority: choices.priority,
    ...(Object.keys(values).length ? { set_values: values } : {})
  };
}
