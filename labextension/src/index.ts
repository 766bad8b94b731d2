/**
 * The OSMO JupyterLab extension: a left-sidebar panel over the osmo server extension's API,
 * a log viewer tab per task, "Submit to OSMO" on YAML files, and Validate / Submit in a YAML
 * file's editor.
 */
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  MainAreaWidget,
  Notification,
  showDialog,
  WidgetTracker
} from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { FileDialog, IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { URLExt } from '@jupyterlab/coreutils';
import { ILauncher } from '@jupyterlab/launcher';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStateDB } from '@jupyterlab/statedb';
import { Widget } from '@lumino/widgets';

import { interactiveActions, TaskActions } from './actions';
import { ApiError, OsmoClient, relocated, SocketLike, SubmitOptions, Transport } from './api';
import { API_ROOT, CommandIDs, osmoIcon } from './commands';
import { h } from './dom';
import { hideTaskCards, pickTask, TaskCard, taskKernels } from './launcher';
import { LogViewer } from './logs';
import { OsmoPanel } from './panel';
import { DEFAULT_SETTINGS, readSettings } from './settings';
import {
  initialChoices,
  readMemory,
  remember,
  SUBMIT_STATE,
  SubmitChoices,
  submitOptions
} from './submitchoices';
import { askSubmitOptions } from './submitdialog';
import { mainArea, openLinkedView } from './mainarea';
import { addTaskCommands } from './taskcommands';
import { addTaskMenu } from './taskmenu';
import { answerWidgets } from './widgetbridge';
import { addWorkflowMenu } from './workflowmenu';
import { WorkflowTab } from './workflowview';
import { YamlTools } from './yamltools';

export { API_ROOT, CommandIDs, osmoIcon };
export { kernelName, taskSettings } from './taskcommands';

const SPECS_REFRESH_MS = 300; // one refresh for a burst of task events

/** The API's transport through JupyterLab's server connection (token, XSRF, base URL). */
export function labTransport(settings: ServerConnection.ISettings): Transport {
  return {
    // Not the default `no-store`: makeRequest then appends a bare `?<timestamp>` cache buster,
    // which the API's strict query validation refuses (400). The API sends no-store anyway.
    fetch: (path, init) =>
      ServerConnection.makeRequest(
        settings.baseUrl + API_ROOT + path,
        { cache: 'no-cache', ...init },
        settings
      ),
    socket: path => {
      const url = new URL(settings.wsUrl + API_ROOT + path);
      if (settings.token && settings.appendToken) {
        url.searchParams.set('token', settings.token);
      }
      return new settings.WebSocket(url.toString()) as unknown as SocketLike;
    }
  };
}

/** The server's message as a notification; a toast shows ~140 characters, so the whole of it
 * (every problem of a bad spec, one per line) is one click away. */
function notifyError(title: string, error: unknown): void {
  const message =
    error instanceof ApiError || error instanceof Error ? error.message : String(error);
  console.warn(`osmo: ${title}:`, error);
  Notification.error(`${title}: ${message}`, {
    autoClose: 10000,
    actions: [
      {
        label: 'Details',
        caption: 'Show the whole message',
        callback: () =>
          void showDialog({
            title,
            body: new Widget({ node: h('pre', { class: 'osmo-error-details' }, message) }),
            buttons: [Dialog.okButton({ label: 'Close' })]
          })
      }
    ]
  });
}

const PLUGIN_ID = '@osmo-jupyter/labextension:plugin';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'OSMO workflows in JupyterLab: live list, DAG, logs, submit, cancel, pools',
  autoStart: true,
  optional: [
    ILayoutRestorer,
    ICommandPalette,
    IFileBrowserFactory,
    IDocumentManager,
    ILauncher,
    ISettingRegistry,
    IStateDB,
    ILabShell
  ],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    browsers: IFileBrowserFactory | null,
    docs: IDocumentManager | null,
    launcher: ILauncher | null,
    registry: ISettingRegistry | null,
    state: IStateDB | null,
    labShell: ILabShell | null
  ) => {
    const client = new OsmoClient(labTransport(app.serviceManager.serverSettings));
    // Notebook 7 (no ILabShell) has no dock panel: its views open in JupyterLab
    const main = mainArea(app, labShell !== null);
    if (labShell) {
      void openLinkedView(app);
    }
    let prefs = DEFAULT_SETTINGS;
    const actions = new TaskActions();
    const settings = app.serviceManager.serverSettings;
    for (const action of interactiveActions({
      apiUrl: URLExt.join(settings.baseUrl, API_ROOT),
      openTerminal: async (workflowId, task) =>
        void (await app.commands.execute(CommandIDs.openTerminal, { workflowId, task })),
      openNotebook: async (workflowId, task) =>
        void (await app.commands.execute(CommandIDs.openNotebook, { workflowId, task })),
      openUrl: url => void window.open(url, '_blank', 'noopener'),
      done: (workflowId, task) => client.done(workflowId, task),
      retry: (workflowId, task) => client.retryTask(workflowId, task)
    })) {
      actions.add(action);
    }
    const logs = new WidgetTracker<MainAreaWidget<LogViewer>>({ namespace: 'osmo-logs' });

    async function submitPath(path: string, opts?: SubmitOptions): Promise<string | null> {
      try {
        const file = await app.serviceManager.contents.get(path, {
          content: true,
          format: 'text'
        });
        let id: string;
        try {
          const pool = prefs.defaultPool;
          ({ id } = await client.submit(String(file.content), opts ?? (pool ? { pool } : {})));
        } catch (e) {
          throw e instanceof ApiError ? relocated(e, path) : e;
        }
        Notification.success(`Submitted ${path} as ${id}`, { autoClose: 4000 });
        return id;
      } catch (e) {
        notifyError(`Could not submit ${path}`, e);
        return null;
      }
    }

    // Kernel specs (the Launcher's cards, the kernel picker) follow the tasks that run: without
    // a refresh JupyterLab polls them once a minute and offers a task that has ended.
    let specsTimer = 0;
    const tasksMoved = () => {
      window.clearTimeout(specsTimer);
      specsTimer = window.setTimeout(
        () => void app.serviceManager.kernelspecs.refreshSpecs(),
        SPECS_REFRESH_MS
      );
    };
    const panel = new OsmoPanel({
      client,
      actions,
      notifyError,
      tasksMoved,
      openLogs: (workflowId, task) =>
        void app.commands.execute(CommandIDs.openLogs, { workflowId, task }),
      submitFile: async () =>
        (await app.commands.execute(CommandIDs.submitFile, {})) as string | null,
      confirm: async (title, body, action) =>
        (
          await showDialog({
            title,
            body,
            buttons: [
              Dialog.cancelButton({ label: 'Keep running' }),
              Dialog.warnButton({ label: action })
            ]
          })
        ).button.accept,
      notify: message => void Notification.success(message, { autoClose: 5000 }),
      openWorkflowView: workflowId =>
        void app.commands.execute(CommandIDs.openWorkflowView, { workflowId }),
      notifyHeld: (message, show) =>
        void Notification.warning(message, {
          autoClose: false,
          actions: [{ label: 'Show', caption: 'Show the task in the OSMO panel', callback: show }]
        })
    });
    panel.title.icon = osmoIcon;
    if (registry) {
      void registry
        .load(PLUGIN_ID)
        .then(loaded => {
          const apply = () => {
            prefs = readSettings(loaded.composite as Record<string, unknown>);
            panel.configure(prefs);
          };
          apply();
          loaded.changed.connect(apply);
        })
        .catch(e => notifyError('Could not read the OSMO settings', e));
    } else {
      panel.configure(prefs);
    }
    app.shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, 'osmo-panel');

    app.commands.addCommand(CommandIDs.openPanel, {
      label: 'OSMO: Show Workflows',
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'OSMO: Reload Workflows',
      execute: () => panel.reload()
    });
    app.commands.addCommand(CommandIDs.submitFile, {
      label: 'OSMO: Submit Workflow YAML…',
      execute: async args => {
        const memory = readMemory(await state?.fetch(SUBMIT_STATE).catch(() => null));
        let path = args.path as string | undefined;
        if (!path) {
          if (!docs) {
            return null;
          }
          const result = await FileDialog.getOpenFiles({
            manager: docs,
            title: 'Submit a workflow to OSMO',
            defaultPath: await existingFolder(memory.folder),
            filter: model =>
              model.type === 'directory' || /\.ya?ml$/i.test(model.name) ? {} : null
          });
          const chosen = result.button.accept ? result.value?.[0] : undefined;
          path = chosen?.type === 'directory' ? undefined : chosen?.path; // accepted empty
        }
        if (!path) {
          return null;
        }
        const choices = await choicesFor(path, true);
        if (!choices) {
          return null;
        }
        const id = await submitPath(path, submitOptions(choices));
        if (id) {
          await rememberChoices(path, choices);
        }
        return id;
      }
    });
    /** The options to submit `path` with: those remembered for it, or (`ask`) the submit
     * dialog's, starting from them (null: cancelled). */
    async function choicesFor(path: string, ask: boolean): Promise<SubmitChoices | null> {
      const memory = readMemory(await state?.fetch(SUBMIT_STATE).catch(() => null));
      const initial = initialChoices(memory, path, prefs.defaultPool);
      if (!ask) {
        return initial;
      }
      const pools = await client.pools().catch(() => []);
      return askSubmitOptions(`Submit ${path.split('/').pop()}`, pools, initial);
    }
    async function rememberChoices(path: string, choices: SubmitChoices): Promise<void> {
      const memory = readMemory(await state?.fetch(SUBMIT_STATE).catch(() => null));
      await state?.save(SUBMIT_STATE, remember(memory, path, choices, prefs.defaultPool));
    }
    /** `folder` when it still exists, else undefined (the file browser's root). */
    async function existingFolder(folder: string): Promise<string | undefined> {
      if (!folder) {
        return undefined;
      }
      const model = await app.serviceManager.contents
        .get(folder, { content: false })
        .catch(() => null);
      return model?.type === 'directory' ? folder : undefined;
    }
    app.commands.addCommand(CommandIDs.submitSelected, {
      label: 'Submit to OSMO',
      icon: osmoIcon,
      execute: async () => {
        const browser = browsers?.tracker.currentWidget;
        let last: string | null = null;
        for (const item of browser ? [...browser.selectedItems()] : []) {
          last = (await submitPath(item.path)) ?? last;
        }
        if (last) {
          app.shell.activateById(panel.id);
          await panel.select(last);
        }
      }
    });
    app.docRegistry.addWidgetExtension(
      'Editor',
      new YamlTools({
        client,
        choices: choicesFor,
        notifyError,
        submitted: (id, path, choices) => {
          void rememberChoices(path, choices);
          Notification.success(`Submitted ${path} as ${id}`, {
            autoClose: 5000,
            actions: [
              {
                label: 'Open in Tab',
                caption: "The workflow's graph, timeline and tasks in a main-area tab",
                callback: () =>
                  void app.commands.execute(CommandIDs.openWorkflowView, { workflowId: id })
              }
            ]
          });
          app.shell.activateById(panel.id);
          void panel.select(id);
        }
      })
    );
    app.commands.addCommand(CommandIDs.submitSelectedWithOptions, {
      label: 'Submit to OSMO…',
      icon: osmoIcon,
      execute: async () => {
        const item = browsers?.tracker.currentWidget?.selectedItems().next();
        const path = item && !item.done ? item.value.path : null;
        const id = path
          ? ((await app.commands.execute(CommandIDs.submitFile, { path })) as string | null)
          : null;
        if (id) {
          app.shell.activateById(panel.id);
          await panel.select(id);
        }
      }
    });
    [CommandIDs.submitSelected, CommandIDs.submitSelectedWithOptions].forEach((command, i) =>
      app.contextMenu.addItem({
        command,
        selector: '.jp-DirListing-item[data-file-type="yaml"]',
        rank: 20 + i
      })
    );
    app.commands.addCommand(CommandIDs.openLogs, {
      label: args => (args.task ? `Log of ${args.task}` : 'OSMO: Open Task Log'),
      execute: args => {
        const workflowId = String(args.workflowId);
        const task = String(args.task);
        const open = logs.find(w => w.content.workflowId === workflowId && w.content.task === task);
        if (open) {
          app.shell.activateById(open.id);
          return open;
        }
        const content = new LogViewer(
          client,
          workflowId,
          task,
          notifyError,
          () => void app.commands.execute(CommandIDs.showTask, { workflowId, task })
        );
        const widget = new MainAreaWidget({ content });
        widget.id = content.id;
        widget.title.icon = osmoIcon;
        void logs.add(widget);
        return main.show(widget, { workflowId, task }) ? widget : null;
      }
    });
    addTaskCommands(app, { client, notifyError, main }, restorer);
    app.commands.addCommand(CommandIDs.taskKernel, {
      label: 'Task notebook…',
      caption: 'A notebook or console on the kernel of a running OSMO task',
      icon: osmoIcon,
      execute: async () => {
        await app.serviceManager.kernelspecs.refreshSpecs();
        const kernels = taskKernels(app.serviceManager.kernelspecs.specs);
        if (!kernels.length) {
          throw new Error('no OSMO task is running');
        }
        const picked = await pickTask(kernels);
        if (!picked) {
          return null;
        }
        const { name, workflowId, task } = picked.kernel;
        return picked.kind === 'console'
          ? app.commands.execute('console:create', { kernelPreference: { name } })
          : app.commands.execute(CommandIDs.openNotebook, { workflowId, task });
      }
    });
    const views = new WidgetTracker<MainAreaWidget<WorkflowTab>>({
      namespace: 'osmo-workflow-views'
    });
    const menuRow = addWorkflowMenu(app, panel, client, notifyError, main);
    // the notebook monitor's Terminal and Notebook buttons; Notebook 7 (no ILabShell) has no
    // main area for a terminal tab
    answerWidgets(app, { terminals: labShell !== null });
    const tabOf = (workflowId: string) => views.find(w => w.content.workflowId === workflowId);
    addTaskMenu(app, {
      status: (workflowId, task) => tabOf(workflowId)?.content.taskStatus(task) ?? '',
      ended: workflowId => tabOf(workflowId)?.content.ended ?? false,
      rerunFrom: async (workflowId, task) => {
        app.shell.activateById(panel.id);
        await panel.restart(workflowId, task);
      }
    });
    app.commands.addCommand(CommandIDs.openWorkflowView, {
      label: args => (args.workflowId ? `Open ${args.workflowId} in a Tab` : 'Open in Tab'),
      caption: "The workflow's graph, timeline, tasks and resources in a main-area tab",
      execute: args => {
        const workflowId = String(args.workflowId ?? menuRow());
        if (!workflowId) {
          return null; // neither named nor right-clicked: nothing to open
        }
        const open = views.find(w => w.content.workflowId === workflowId);
        if (open) {
          app.shell.activateById(open.id); // one tab per workflow
          return open;
        }
        const content = new WorkflowTab(
          {
            client,
            notifyError,
            showTask: (id, task) => {
              app.shell.activateById(panel.id);
              void panel.showTask(id, task);
            },
            openLogs: (id, task) =>
              void app.commands.execute(CommandIDs.openLogs, { workflowId: id, task })
          },
          workflowId
        );
        const widget = new MainAreaWidget({ content });
        widget.id = `${content.id}-tab`;
        widget.title.icon = osmoIcon;
        void views.add(widget);
        return main.show(widget, { workflowId }) ? widget : null;
      }
    });
    app.commands.addCommand(CommandIDs.showTask, {
      label: args => `Show ${args.task} in the OSMO panel`,
      execute: async args => {
        const workflowId = String(args.workflowId);
        const task = String(args.task);
        views.find(w => w.content.workflowId === workflowId)?.content.highlight(task);
        app.shell.activateById(panel.id);
        await panel.showTask(workflowId, task);
      }
    });
    if (launcher) {
      hideTaskCards(launcher);
      const card = new TaskCard(launcher, CommandIDs.taskKernel, () =>
        taskKernels(app.serviceManager.kernelspecs.specs)
      );
      app.serviceManager.kernelspecs.specsChanged.connect(() => card.update());
      void app.serviceManager.kernelspecs.ready.then(() => card.update());
    }
    if (restorer) {
      void restorer.restore(views, {
        command: CommandIDs.openWorkflowView,
        args: w => ({ workflowId: w.content.workflowId }),
        name: w => w.content.workflowId
      });
      void restorer.restore(logs, {
        command: CommandIDs.openLogs,
        args: w => ({ workflowId: w.content.workflowId, task: w.content.task }),
        name: w => `${w.content.workflowId}/${w.content.task}`
      });
    }
    for (const command of [CommandIDs.openPanel, CommandIDs.submitFile, CommandIDs.refresh]) {
      palette?.addItem({ command, category: 'OSMO' });
    }
  }
};

export default plugin;
