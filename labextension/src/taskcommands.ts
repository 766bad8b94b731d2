/**
 * Into a running task from JupyterLab: a terminal tab on a shell in the task (through the
 * task's terminals API, osmo_jupyter/server/terminals.py) and a notebook on a kernel in it.
 * Terminal tabs are restored after a page reload onto the same shell while the server keeps
 * it, never onto a new one.
 */
import type { ILayoutRestorer, JupyterFrontEnd } from '@jupyterlab/application';
import { MainAreaWidget, WidgetTracker } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection, TerminalManager } from '@jupyterlab/services';
import { Terminal } from '@jupyterlab/terminal';
import type { Widget } from '@lumino/widgets';

import { OsmoClient } from './api';
import { API_ROOT, CommandIDs } from './commands';
import type { MainArea } from './mainarea';

export interface TaskCommandsEnv {
  client: OsmoClient;
  notifyError(title: string, error: unknown): void;
  main: MainArea;
}

/** The kernel spec of a running task (osmo_jupyter/_attach.py `spec_name`). */
export function kernelName(workflowId: string, task: string): string {
  return `osmo--${workflowId}--${task}`.toLowerCase();
}

/** Server settings whose base URL is a task's: jupyter_server's terminals API runs there
 * (osmo_jupyter/server/terminals.py), so TerminalManager works unchanged. */
export function taskSettings(
  settings: ServerConnection.ISettings,
  workflowId: string,
  task: string
): ServerConnection.ISettings {
  const base = URLExt.join(settings.baseUrl, API_ROOT, OsmoClient.taskPath(workflowId, task));
  const wsBase = URLExt.join(settings.wsUrl, API_ROOT, OsmoClient.taskPath(workflowId, task));
  return ServerConnection.makeSettings({ ...settings, baseUrl: base, wsUrl: wsBase });
}

export function addTaskCommands(
  app: JupyterFrontEnd,
  env: TaskCommandsEnv,
  restorer: ILayoutRestorer | null
): void {
  const terminals = new WidgetTracker<MainAreaWidget<Terminal>>({
    namespace: 'osmo-task-terminal'
  });
  const terminalOf = new WeakMap<Widget, { workflowId: string; task: string; name: string }>();
  app.commands.addCommand(CommandIDs.openTerminal, {
    label: args => `Terminal in ${args.workflowId}/${args.task}`,
    execute: async args => {
      const workflowId = String(args.workflowId);
      const task = String(args.task);
      if (!env.main.docked) {
        // no tab to show it in: no shell is started for it
        env.main.offer(`A terminal in ${workflowId}/${task}`, { workflowId });
        return null;
      }
      const manager = new TerminalManager({
        serverSettings: taskSettings(app.serviceManager.serverSettings, workflowId, task)
      });
      let session: Awaited<ReturnType<TerminalManager['startNew']>>;
      if (args.name) {
        // A tab restored after a reload: its shell if the server still has it, never a new
        // one (a rejection drops the tab from the saved layout).
        await manager.refreshRunning().catch(() => undefined);
        const model = [...manager.running()].find(m => m.name === args.name);
        if (!model) {
          manager.dispose();
          throw new Error(`the shell ${String(args.name)} in ${workflowId}/${task} has ended`);
        }
        session = manager.connectTo({ model });
      } else {
        try {
          session = await manager.startNew();
        } catch (e) {
          manager.dispose();
          // reported here, whoever ran the command: the API's refusal says why (whose task)
          env.notifyError(`Could not open a terminal in ${workflowId}/${task}`, e);
          return null;
        }
      }
      // Kept open when the shell ends: the last lines say why (the task ended, say).
      const content = new Terminal(session, { closeOnExit: false });
      // The widget names itself "Terminal N" on connect and after the shell's title escapes;
      // the tab keeps saying which task it is in.
      const label = `${workflowId}/${task}`;
      const keepLabel = () => {
        if (content.title.label !== label) {
          content.title.label = label;
        }
      };
      keepLabel();
      content.title.changed.connect(keepLabel);
      const widget = new MainAreaWidget({ content });
      widget.id = `osmo-terminal-${workflowId}-${task}-${session.name}`;
      widget.title.caption = `A shell in task ${task} of ${workflowId}`;
      widget.addClass('osmo-task-terminal');
      // Closing the tab leaves the shell to the server (it ends 10 minutes after its last
      // viewer, or with the task), as JupyterLab's own terminals outlive their tabs.
      widget.disposed.connect(() => manager.dispose());
      terminalOf.set(widget, { workflowId, task, name: session.name });
      void terminals.add(widget);
      return env.main.show(widget, { workflowId }) ? widget : null;
    }
  });
  app.commands.addCommand(CommandIDs.openNotebook, {
    label: args => `Notebook on ${args.workflowId}/${args.task}`,
    execute: async args => {
      const workflowId = String(args.workflowId);
      const task = String(args.task);
      const name = kernelName(workflowId, task);
      let kernel: Awaited<ReturnType<typeof app.serviceManager.kernels.startNew>>;
      try {
        // The spec exists only while the task runs: refresh before looking for it.
        await app.serviceManager.kernelspecs.refreshSpecs();
        if (!app.serviceManager.kernelspecs.specs?.kernelspecs[name]) {
          // No spec: the task is not the caller's (the API's refusal names whose it is) or
          // no longer runs.
          const info = await env.client.task(workflowId, task);
          throw new Error(`no kernel for ${workflowId}/${task}: it is ${info.status}`);
        }
        // The kernel first: a task that cannot run one (no ipykernel) answers 409 with what
        // to install, shown whole, and no empty notebook is left behind.
        kernel = await app.serviceManager.kernels.startNew({ name });
      } catch (e) {
        env.notifyError(`Could not open a kernel in ${workflowId}/${task}`, e);
        return null;
      }
      try {
        return await app.commands.execute('notebook:create-new', {
          kernelId: kernel.id,
          kernelName: name
        });
      } finally {
        kernel.dispose(); // this connection only: the notebook's session keeps the kernel
      }
    }
  });
  void restorer?.restore(terminals, {
    command: CommandIDs.openTerminal,
    args: w => ({ ...terminalOf.get(w) }),
    name: w => w.id
  });
}
