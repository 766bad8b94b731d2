/**
 * Actions on a task, shown as buttons in its details. Each is one small object: a label, when it
 * is shown (`available`) and what it does. An action with `expand` stands for several buttons
 * (one per forwarded port of the task).
 */
import type { TaskView } from './model';
import type { SpecTask } from './specinfo';

export interface TaskContext {
  workflowId: string;
  task: TaskView;
  /** What the spec says of the task (its ports), when known. */
  spec?: SpecTask;
}

export interface TaskAction {
  id: string;
  label: string;
  /** Shown only when this says so (e.g. a terminal only while the task runs). */
  available(ctx: TaskContext): boolean;
  execute(ctx: TaskContext): Promise<void> | void;
  /** Several buttons in place of this one, e.g. one per port; ids must be unique. */
  expand?(ctx: TaskContext): TaskAction[];
}

export class TaskActions {
  private actions: TaskAction[] = [];

  add(action: TaskAction): void {
    this.actions = [...this.actions.filter(a => a.id !== action.id), action];
  }

  for(ctx: TaskContext): TaskAction[] {
    return this.actions
      .filter(a => a.available(ctx))
      .flatMap(a => (a.expand ? a.expand(ctx) : [a]));
  }
}

const running = (ctx: TaskContext) => ctx.task.status === 'RUNNING';

/** What the interactive actions need from JupyterLab (index.ts), so they are unit-tested here. */
export interface InteractiveEnv {
  openTerminal(workflowId: string, task: string): Promise<void>;
  openNotebook(workflowId: string, task: string): Promise<void>;
  /** Open a URL in a new browser tab. */
  openUrl(url: string): void;
  /** The absolute URL of the API root (`{baseUrl}osmo/api/v1/`). */
  apiUrl: string;
  done(workflowId: string, task: string): Promise<unknown>;
  retry(workflowId: string, task: string): Promise<unknown>;
}

/** A task's forwarded port in a browser tab: the server's HTTP proxy into the task. */
export function proxyUrl(apiUrl: string, workflowId: string, task: string, port: number): string {
  const q = encodeURIComponent;
  return `${apiUrl}workflows/${q(workflowId)}/tasks/${q(task)}/proxy/${port}/`;
}

/** Terminal, notebook and ports while a task runs; Done / Retry while it is held. */
export function interactiveActions(env: InteractiveEnv): TaskAction[] {
  return [
    {
      id: 'terminal',
      label: 'Open terminal',
      available: running,
      execute: ctx => env.openTerminal(ctx.workflowId, ctx.task.name)
    },
    {
      id: 'notebook',
      label: 'New notebook',
      available: running,
      execute: ctx => env.openNotebook(ctx.workflowId, ctx.task.name)
    },
    {
      id: 'port',
      label: 'Open port',
      available: ctx => running(ctx) && (ctx.spec?.ports.length ?? 0) > 0,
      execute: () => undefined,
      expand: ctx =>
        (ctx.spec?.ports ?? []).map(port => ({
          id: `port-${port}`,
          label: `Open port ${port}`,
          available: running,
          execute: c => env.openUrl(proxyUrl(env.apiUrl, c.workflowId, c.task.name, port))
        }))
    },
    {
      id: 'done',
      label: 'Done',
      available: ctx => running(ctx) && !!ctx.task.waiting_for_user,
      execute: async ctx => void (await env.done(ctx.workflowId, ctx.task.name))
    },
    {
      id: 'retry',
      label: 'Retry task',
      available: ctx => running(ctx) && !!ctx.task.held_for_debugging,
      execute: async ctx => void (await env.retry(ctx.workflowId, ctx.task.name))
    }
  ];
}
