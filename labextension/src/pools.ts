/** Pools, their platforms, and each machine's capacity and what is in use now. */
import type { NodeUsage, OsmoClient, PoolInfo, Resource } from './api';
import { h } from './dom';

function meter(label: string, used: number, total: number, text: string): HTMLElement {
  const share = total > 0 ? Math.min(1, Math.max(0, used / total)) : 0;
  return h(
    'div',
    { class: 'osmo-meter-row' },
    h('span', { class: 'osmo-meter-label' }, label),
    h('meter', {
      class: 'osmo-meter',
      min: 0,
      max: total || 1,
      value: used,
      'aria-label': `${label} in use: ${text}`
    }),
    h('span', { class: 'osmo-meter-text', 'data-share': share.toFixed(2) }, text)
  );
}

const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)}Gi`;
const num = (n: number) => String(Math.round(n * 100) / 100);

export function renderNode(n: NodeUsage): HTMLElement {
  const usedCpu = n.cpu - n.free_cpu;
  const usedMem = n.memory - n.free_memory;
  const usedGpu = n.gpus.length - n.free_gpus.length;
  return h(
    'div',
    { class: 'osmo-node', 'data-node': n.node },
    h(
      'div',
      { class: 'osmo-node-name' },
      `${n.node}`,
      h('small', {}, ` ${n.backend}${n.arch ? ` · ${n.arch}` : ''}`)
    ),
    meter('CPU', usedCpu, n.cpu, `${num(usedCpu)} / ${num(n.cpu)}`),
    meter('Memory', usedMem, n.memory, `${gib(usedMem)} / ${gib(n.memory)}`),
    n.gpus.length ? meter('GPU', usedGpu, n.gpus.length, `${usedGpu} / ${n.gpus.length}`) : ''
  );
}

export function renderPools(pools: PoolInfo[], nodes: Resource[]): HTMLElement {
  const box = h('div', { class: 'osmo-pool-list' });
  if (!pools.length) {
    box.append(h('p', { class: 'osmo-hint' }, 'No pool is open to you.'));
  }
  for (const p of pools) {
    const platforms = Object.keys(p.platforms);
    // the server says which pools a machine serves (a pool's platforms may span backends)
    const members = nodes.filter(n => n.pools.includes(p.name));
    box.append(
      h(
        'section',
        { class: 'osmo-pool', 'data-pool': p.name, 'aria-label': `pool ${p.name}` },
        h(
          'h4',
          {},
          p.name,
          h('small', {}, ` backend ${p.backend} · platforms ${platforms.join(', ')}`)
        ),
        ...(members.length ? members : p.nodes).map(renderNode)
      )
    );
  }
  return box;
}

/** The panel's "Pools and resources" box: read when opened, and again as tasks start and end. */
export class PoolsView {
  private readonly body = h('div', { class: 'osmo-pools-body' });
  readonly node = h(
    'details',
    { class: 'osmo-pools' },
    h('summary', {}, 'Pools and resources'),
    this.body
  );
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly client: OsmoClient,
    private readonly notifyError: (title: string, error: unknown) => void
  ) {
    this.node.addEventListener('toggle', () => {
      if (this.node.open) {
        void this.refresh();
      }
    });
  }

  /** A task started or ended, moving the capacity in use: read it again (at most once a second). */
  taskMoved(): void {
    if (!this.node.open || this.timer) {
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.refresh();
    }, 1000);
  }

  async refresh(): Promise<void> {
    try {
      const [pools, nodes] = await Promise.all([this.client.pools(), this.client.resources()]);
      this.body.replaceChildren(renderPools(pools, nodes));
    } catch (e) {
      this.notifyError('Could not read pools', e);
    }
  }
}
