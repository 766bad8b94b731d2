/**
 * Task kernels in the Launcher: one OSMO card, not two per running task. JupyterLab's notebook
 * and console extensions add a card for every kernel spec, and every running task is one
 * (osmo_jupyter/kernels.py), so 50 tasks made 100 cards. Their cards are left out of the
 * Launcher's items; one "Task notebook…" card, shown while some task runs, asks which task.
 * The specs stay listed, so the kernel picker of an open notebook still offers the tasks.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import type { ILauncher } from '@jupyterlab/launcher';
import type { KernelSpec } from '@jupyterlab/services';
import type { IDisposable } from '@lumino/disposable';
import { Widget } from '@lumino/widgets';

import { h } from './dom';

/** The kernel spec names of tasks (osmo_jupyter/_attach.py `PREFIX`). */
export function isTaskKernel(name: unknown): boolean {
  return typeof name === 'string' && name.toLowerCase().startsWith('osmo--');
}

/** Kernel spec names whose cards a launcher item is: notebook (`kernelName`), console
 * (`kernelPreference.name`). */
function itemKernel(item: ILauncher.IItemOptions): unknown {
  const args = item.args ?? {};
  const preference = args.kernelPreference as { name?: unknown } | undefined;
  return args.kernelName ?? preference?.name;
}

/** Leave task kernels' cards out of the Launcher (whenever they were added). */
export function hideTaskCards(launcher: ILauncher): void {
  const model = launcher as Partial<ILauncher.IModel>;
  const items = model.items?.bind(model);
  if (!items) {
    return; // another launcher than JupyterLab's: it shows what it shows
  }
  model.items = function* () {
    for (const item of items()) {
      if (!isTaskKernel(itemKernel(item))) {
        yield item;
      }
    }
  };
}

export interface TaskKernel {
  name: string;
  workflowId: string;
  task: string;
}

/** The running tasks' kernels among `specs` (their spec's `metadata.osmo` says which task). */
export function taskKernels(specs: KernelSpec.ISpecModels | null | undefined): TaskKernel[] {
  const out: TaskKernel[] = [];
  for (const spec of Object.values(specs?.kernelspecs ?? {})) {
    const osmo = spec?.metadata?.osmo as { workflow?: unknown; task?: unknown } | undefined;
    if (spec && isTaskKernel(spec.name) && typeof osmo?.workflow === 'string') {
      out.push({ name: spec.name, workflowId: osmo.workflow, task: String(osmo.task) });
    }
  }
  const label = (k: TaskKernel) => `${k.workflowId}/${k.task}`;
  return out.sort((a, b) => label(a).localeCompare(label(b)));
}

/** One OSMO card while `kernels()` has any, none otherwise; call `update()` when they change. */
export class TaskCard {
  private card: IDisposable | null = null;

  constructor(
    private readonly launcher: ILauncher,
    private readonly command: string,
    private readonly kernels: () => TaskKernel[]
  ) {}

  update(): void {
    const any = this.kernels().length > 0;
    if (any && !this.card) {
      this.card = this.launcher.add({ command: this.command, category: 'OSMO', rank: 0 });
    } else if (!any && this.card) {
      this.card.dispose();
      this.card = null;
    }
  }
}

/** Ask which task, and whether a notebook or a console; null if cancelled. */
export async function pickTask(
  kernels: TaskKernel[]
): Promise<{ kernel: TaskKernel; kind: 'notebook' | 'console' } | null> {
  const select = h('select', {
    class: 'jp-mod-styled osmo-task-picker',
    'aria-label': 'Running task'
  });
  select.append(
    ...kernels.map((k, i) => h('option', { value: String(i) }, `${k.workflowId}/${k.task}`))
  );
  const body = new Widget({
    node: h('label', { class: 'osmo-task-pick' }, 'A kernel inside the running task ', select)
  });
  const result = await showDialog({
    title: 'OSMO: open a task kernel',
    body,
    focusNodeSelector: 'select',
    buttons: [
      Dialog.cancelButton(),
      Dialog.createButton({ label: 'Console', caption: 'A console on the task kernel' }),
      Dialog.okButton({ label: 'Notebook', caption: 'A new notebook on the task kernel' })
    ]
  });
  if (!result.button.accept) {
    return null;
  }
  return {
    kernel: kernels[Number(select.value)],
    kind: result.button.label === 'Console' ? 'console' : 'notebook'
  };
}
