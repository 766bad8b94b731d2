/**
 * The context menu of a task in a workflow tab — a graph node, a timeline bar, a table row:
 * its log, the task in the side panel, a terminal in it while it runs, once the workflow has
 * ended a rerun from it (OSMO's restart: that task's group and what is downstream of it run
 * again, the rest is reused), a copy of its name.
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import { Clipboard } from '@jupyterlab/apputils';

import { CommandIDs } from './commands';

export interface TaskMenuEnv {
  /** The status of `task` as its open workflow tab shows it ('' when unknown). */
  status(workflowId: string, task: string): string;
  /** Whether the workflow has ended, as its open tab shows it. */
  ended(workflowId: string): boolean;
  /** Restart the workflow from `task` on, and show the new one. */
  rerunFrom(workflowId: string, task: string): Promise<void>;
}

export const TaskMenuIDs = {
  log: 'osmo:task-menu-log',
  show: 'osmo:task-menu-show',
  terminal: 'osmo:task-menu-terminal',
  rerun: 'osmo:task-menu-rerun',
  copy: 'osmo:task-menu-copy'
} as const;

/** Where a task of a workflow tab is drawn (a collapsed group has no `data-task`). */
export const TASK_SELECTOR = '.osmo-workflow-view [data-task]';

export function addTaskMenu(app: JupyterFrontEnd, env: TaskMenuEnv): void {
  // Read when the menu opens: a live workflow re-renders its tab and replaces these elements.
  let target = { workflowId: '', task: '' };
  document.addEventListener(
    'contextmenu',
    ev => {
      const el = ev.target as Element | null;
      const tab = el?.closest<HTMLElement>('.osmo-workflow-view[data-workflow]');
      const task = el?.closest<HTMLElement>('[data-task]')?.dataset.task;
      target = tab && task ? { workflowId: tab.dataset.workflow ?? '', task } : target;
    },
    true
  );
  const run = (command: string) => () => app.commands.execute(command, { ...target });
  app.commands.addCommand(TaskMenuIDs.log, {
    label: 'Open Log',
    execute: run(CommandIDs.openLogs)
  });
  app.commands.addCommand(TaskMenuIDs.show, {
    label: 'Show in OSMO Panel',
    execute: run(CommandIDs.showTask)
  });
  app.commands.addCommand(TaskMenuIDs.terminal, {
    label: 'Open Terminal in Task',
    isEnabled: () => env.status(target.workflowId, target.task) === 'RUNNING',
    execute: run(CommandIDs.openTerminal)
  });
  app.commands.addCommand(TaskMenuIDs.rerun, {
    label: 'Rerun from This Task',
    caption: "A new workflow: this task's group and everything downstream run again",
    isEnabled: () => env.ended(target.workflowId),
    execute: () => env.rerunFrom(target.workflowId, target.task)
  });
  app.commands.addCommand(TaskMenuIDs.copy, {
    label: 'Copy Task Name',
    execute: () => Clipboard.copyToSystem(target.task)
  });
  Object.values(TaskMenuIDs).forEach((command, rank) =>
    app.contextMenu.addItem({ command, selector: TASK_SELECTOR, rank })
  );
}
