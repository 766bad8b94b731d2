/**
 * Held tasks (`interactive: true` waiting for its user, `debug: on-failure` kept after a failure)
 * need someone: a banner at the top of the workflow's details with their Done / Retry, and a
 * notification when a task becomes held while the panel is open.
 */
import type { OsmoEvent } from './api';
import { h, on } from './dom';
import { heldTasks, holdText, WorkflowView } from './model';
import { actionButton, TaskDetailEnv } from './taskdetail';

/** The banner of `view`'s held tasks (null when none): each with what it waits for, a link to
 * its details and the actions a held task has (Done, Retry). */
export function renderHeldBanner(
  view: WorkflowView,
  env: TaskDetailEnv,
  selectTask: (task: string) => void
): HTMLElement | null {
  const held = heldTasks(view);
  if (!held.length) {
    return null;
  }
  const items = held.map(t => {
    const ctx = { workflowId: view.id, task: t, spec: view.spec.tasks[t.name] };
    const show = h(
      'button',
      {
        class: 'osmo-link osmo-held-task',
        type: 'button',
        'data-key': `held:${t.name}`,
        title: `Show task ${t.name}`
      },
      t.name
    );
    on(show, 'click', () => selectTask(t.name));
    const actions = env.actions
      .for(ctx)
      .filter(a => a.id === 'done' || a.id === 'retry')
      .map(a => actionButton(a, ctx, env, `held:${t.name}:${a.id}`));
    const why = [
      holdText(t),
      t.exit_code !== null && t.exit_code !== undefined ? `exit code ${t.exit_code}` : ''
    ]
      .filter(Boolean)
      .join(' · ');
    return h(
      'li',
      { class: 'osmo-held-item', 'data-held-task': t.name },
      show,
      h('span', { class: 'osmo-held-why' }, why),
      ...actions
    );
  });
  const title = held.length === 1 ? '1 task needs you' : `${held.length} tasks need you`;
  return h(
    'div',
    { class: 'osmo-held-banner', role: 'status', 'aria-label': title },
    h('strong', {}, title),
    h('ul', {}, ...items)
  );
}

/** When the panel opened: the last event stored then (0 when it could not be read), and the
 * time (seconds since the epoch). */
export interface Opened {
  lastEventId: number;
  at: number;
}

/** The text of a notification for a `task.hold` event, or null when it is no news: stored
 * before the panel opened (by its id; by its time only when the id was not known, so a clock
 * that disagrees with the server's matters only then). */
export function heldNews(ev: OsmoEvent, opened: Opened): string | null {
  if (ev.type !== 'task.hold' || !ev.task) {
    return null;
  }
  const old = opened.lastEventId
    ? ev.id !== null && ev.id <= opened.lastEventId
    : ev.ts < opened.at;
  if (old) {
    return null;
  }
  const hold = ev.payload?.hold;
  const what =
    hold === 'interactive'
      ? 'is waiting for you'
      : hold === 'debug'
        ? 'is held for debugging'
        : null;
  return what ? `${ev.workflow_id}/${ev.task} ${what}` : null;
}
