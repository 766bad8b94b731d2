/**
 * Actions on a task, shown as buttons in its details. Each is one small object, so the
 * interactive ones (terminal in a task, notebook with a task kernel, forwarded port) are one
 * entry each once the server offers them; `available` hides a button the server cannot serve.
 */
import type { TaskAttempt } from './api';

export interface TaskContext {
  workflowId: string;
  task: TaskAttempt;
}

export interface TaskAction {
  id: string;
  label: string;
  /** Shown only when this says so (e.g. a terminal only while the task runs). */
  available(ctx: TaskContext): boolean;
  execute(ctx: TaskContext): Promise<void> | void;
}

export class TaskActions {
  private actions: TaskAction[] = [];

  add(action: TaskAction): void {
    this.actions = [...this.actions.filter(a => a.id !== action.id), action];
  }

  for(ctx: TaskContext): TaskAction[] {
    return this.actions.filter(a => a.available(ctx));
  }
}
