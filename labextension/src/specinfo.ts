/** What the panel reads from a workflow's validated spec (the JSON the server stores): tasks,
 * their upstream tasks and resources. Pure, unit-tested. */

/** What the validated spec says about one task (the spec JSON's task objects). */
export interface SpecTask {
  name: string;
  group?: string;
  inputs: unknown[];
  outputs: unknown[];
  resource?: unknown;
  image?: string;
  command?: string[];
  /** TCP ports inside the task that may be forwarded (`ports:`). */
  ports: number[];
}

export interface SpecInfo {
  tasks: Record<string, SpecTask>;
  upstream: Record<string, string[]>;
  resources: Record<string, unknown>;
}

/** The spec JSON (as stored by the server) → tasks, their upstream tasks and resources. */
export function parseSpec(specJson: string): SpecInfo {
  const spec = JSON.parse(specJson || '{}') as Record<string, unknown>;
  const tasks: Record<string, SpecTask> = {};
  const add = (t: Record<string, unknown>, group?: string) => {
    tasks[String(t.name)] = {
      name: String(t.name),
      group,
      inputs: (t.inputs as unknown[]) ?? [],
      outputs: (t.outputs as unknown[]) ?? [],
      resource: t.resource,
      image: t.image as string | undefined,
      command: t.command as string[] | undefined,
      ports: ((t.ports as unknown[]) ?? []).filter((p): p is number => typeof p === 'number')
    };
  };
  for (const t of (spec.tasks as Record<string, unknown>[]) ?? []) {
    add(t);
  }
  for (const g of (spec.groups as Record<string, unknown>[]) ?? []) {
    for (const t of (g.tasks as Record<string, unknown>[]) ?? []) {
      add(t, String(g.name));
    }
  }
  const upstream: Record<string, string[]> = {};
  for (const t of Object.values(tasks)) {
    upstream[t.name] = t.inputs
      .map(i => (i && typeof i === 'object' ? (i as { task?: string }).task : undefined))
      .filter((x): x is string => typeof x === 'string' && x in tasks);
  }
  return { tasks, upstream, resources: (spec.resources as Record<string, unknown>) ?? {} };
}

/** What task `name` asks for: its resource's fields, with `name` when it names one of the
 * spec's resources (the server's spec names one for every task). */
export function askedResource(spec: SpecInfo, name: string): Record<string, unknown> | undefined {
  const res = spec.tasks[name]?.resource;
  return typeof res === 'string'
    ? { name: res, ...(spec.resources[res] as object) }
    : (res as Record<string, unknown> | undefined);
}

/** Longest-path level of each task (0 = no upstream); a cycle cannot reach here (validated). */
export function levels(upstream: Record<string, string[]>): Record<string, number> {
  const out: Record<string, number> = {};
  const level = (name: string, seen: Set<string>): number => {
    if (name in out) {
      return out[name];
    }
    if (seen.has(name)) {
      return 0;
    }
    seen.add(name);
    const ups = upstream[name] ?? [];
    out[name] = ups.length ? 1 + Math.max(...ups.map(u => level(u, seen))) : 0;
    return out[name];
  };
  for (const name of Object.keys(upstream)) {
    level(name, new Set());
  }
  return out;
}
