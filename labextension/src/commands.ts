/** The extension's command ids, its icon and the API's path, for its modules and for other
 * extensions. */
import { LabIcon } from '@jupyterlab/ui-components';

import iconSvg from '../style/icon.svg';

/** The osmo server extension's REST API, under the server's base URL. */
export const API_ROOT = 'osmo/api/v1/';

export namespace CommandIDs {
  export const openPanel = 'osmo:open-panel';
  export const submitFile = 'osmo:submit-file';
  export const submitSelected = 'osmo:submit-selected';
  /** The file right-clicked, through the submit dialog's options (pool, priority, values). */
  export const submitSelectedWithOptions = 'osmo:submit-selected-options';
  export const openLogs = 'osmo:open-logs';
  /** Select `task` of `workflowId` in the panel, and in its workflow tab when one is open. */
  export const showTask = 'osmo:show-task';
  export const refresh = 'osmo:refresh';
  export const openTerminal = 'osmo:open-terminal';
  export const openNotebook = 'osmo:open-notebook';
  export const taskKernel = 'osmo:task-kernel';
  // the workflow list's context menu: the row right-clicked (and the selection, for cancel)
  export const openWorkflow = 'osmo:workflow-open';
  export const copyId = 'osmo:workflow-copy-id';
  export const cancelWorkflows = 'osmo:workflow-cancel';
  export const restartWorkflow = 'osmo:workflow-restart';
  export const viewSpec = 'osmo:workflow-spec';
  /** A workflow in a main-area tab: `workflowId`, else the list's row right-clicked. */
  export const openWorkflowView = 'osmo:open-workflow-view';
}

export const osmoIcon = new LabIcon({ name: 'osmo-jupyter:osmo', svgstr: iconSvg });
