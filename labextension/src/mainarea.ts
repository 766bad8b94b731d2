/**
 * The panel's main-area views (a workflow tab, a log tab, a task terminal, a spec) where the
 * page has no room for them. Notebook 7's page holds one document and drops a second widget
 * without a word, so there a dialog offers the view in JupyterLab instead, in a new browser tab
 * opened at it: `lab?osmo-workflow=ID[&osmo-task=NAME]` (read by `openLinkedView`). A link
 * opens read-only views only (the workflow's tab, a task's log): never a shell.
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import type { Widget } from '@lumino/widgets';

import { CommandIDs } from './commands';

const WORKFLOW = 'osmo-workflow';
const TASK = 'osmo-task';

/** What a link to JupyterLab opens: the workflow's tab, and `task`'s log. */
export interface ViewLink {
  workflowId: string;
  task?: string;
}

/** Where the panel's views go. */
export interface MainArea {
  /** The page has a dock panel for them (JupyterLab). */
  readonly docked: boolean;
  /** Adds `widget` to the main area and shows it; false where the page has no room for it
   * (then `widget` is disposed and the user is offered `link` in JupyterLab). */
  show(widget: Widget, link: ViewLink): boolean;
  /** The dialog that offers `what` in JupyterLab, at `link`. */
  offer(what: string, link: ViewLink): void;
}

export function mainArea(app: JupyterFrontEnd, docked: boolean): MainArea {
  return {
    docked,
    show(widget, link) {
      if (docked) {
        app.shell.add(widget, 'main');
        app.shell.activateById(widget.id);
        return true;
      }
      const what = widget.title.label || 'This view';
      widget.dispose();
      this.offer(what, link);
      return false;
    },
    offer: (what, link) => void offerLab(what, link)
  };
}

/** The URL of JupyterLab on this server, opened at `link`. */
export function labUrl(link: ViewLink): string {
  const query: Record<string, string> = { [WORKFLOW]: link.workflowId };
  if (link.task) {
    query[TASK] = link.task;
  }
  return `${URLExt.join(PageConfig.getBaseUrl(), 'lab')}${URLExt.objectToQueryString(query)}`;
}

async function offerLab(what: string, link: ViewLink): Promise<void> {
  const result = await showDialog({
    title: 'Open in JupyterLab',
    body:
      `${what} opens in a JupyterLab tab: this page shows one document. ` +
      `JupyterLab opens in a new browser tab at ${link.workflowId}` +
      `${link.task ? ` and the log of ${link.task}` : ''}.`,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Open JupyterLab' })]
  });
  if (result.button.accept) {
    window.open(labUrl(link), '_blank', 'noopener');
  }
}

/** In JupyterLab, once its layout is restored: the view a link from Notebook 7 asked for; the
 * parameters are then taken out of the address, so a reload does not open it again. */
export async function openLinkedView(app: JupyterFrontEnd): Promise<void> {
  const url = new URL(window.location.href);
  const workflowId = url.searchParams.get(WORKFLOW);
  if (!workflowId) {
    return;
  }
  const task = url.searchParams.get(TASK);
  url.searchParams.delete(WORKFLOW);
  url.searchParams.delete(TASK);
  window.history.replaceState(window.history.state, '', url.toString());
  await app.restored;
  await app.commands.execute(CommandIDs.openWorkflowView, { workflowId });
  if (task) {
    await app.commands.execute(CommandIDs.openLogs, { workflowId, task });
  }
}
