/**
 * Validate and Submit in the toolbar of a YAML file's editor. Either one lists the spec's
 * problems under the editor, each `LINE:COL field: message` a link that puts the cursor there,
 * and marks them in the text as CodeMirror diagnostics (diagnostics.ts); a successful submit
 * opens the workflow in the panel.
 */
import { lintGutter, setDiagnostics } from '@codemirror/lint';
import type { EditorView } from '@codemirror/view';
import { ToolbarButton } from '@jupyterlab/apputils';
import type { CodeEditor } from '@jupyterlab/codeeditor';
import type { DocumentRegistry, DocumentWidget } from '@jupyterlab/docregistry';
import type { IDisposable } from '@lumino/disposable';
import { BoxLayout, Widget } from '@lumino/widgets';

import { ApiError, OsmoClient, relocated } from './api';
import { diagnosticsFor, Located } from './diagnostics';
import { h } from './dom';

export interface YamlToolsEnv {
  client: OsmoClient;
  /** The pool to submit to ('' for the server's default). */
  pool(): string;
  /** A workflow was submitted: show it. */
  submitted(id: string, path: string): void;
  notifyError(title: string, error: unknown): void;
}

/** A problem of the spec where the editor can show it (1-based, as the server names them). */
type Problem = Located;

function problemsOf(error: ApiError): Problem[] {
  const found = error.details.map(d => ({
    line: typeof d.line === 'number' ? d.line : null,
    column: typeof d.column === 'number' ? d.column : null,
    text: [d.field, `${d.message ?? ''}${d.hint ? ` (${d.hint})` : ''}`].filter(Boolean).join(': ')
  }));
  return found.length ? found : [{ line: null, column: null, text: error.message }];
}

type EditorWidget = DocumentWidget<Widget & { editor: CodeEditor.IEditor }>;

/** The problems list under one editor. */
class Problems extends Widget {
  private gutter = false;

  constructor(private readonly editor: CodeEditor.IEditor) {
    super();
    this.addClass('osmo-problems');
    this.node.setAttribute('aria-label', 'Problems of the workflow spec');
    this.hide();
  }

  report(title: string, problems: Problem[]): void {
    this.mark(problems);
    this.node.replaceChildren(
      h('div', { class: 'osmo-problems-title' }, title),
      h(
        'ul',
        {},
        ...problems.map(p => {
          const where = p.line === null ? '' : `${p.line}:${p.column ?? 1}`;
          const item = h(
            'li',
            { class: 'osmo-problem', 'data-line': p.line ?? '' },
            where ? h('a', { href: '#', class: 'osmo-problem-at' }, where) : '',
            where ? ' ' : '',
            p.text
          );
          item.querySelector('a')?.addEventListener('click', ev => {
            ev.preventDefault();
            this.goTo(p);
          });
          return item;
        })
      )
    );
    this.show();
  }

  clear(): void {
    this.mark([]);
    this.node.replaceChildren();
    this.hide();
  }

  /** The problems as diagnostics in the text (JupyterLab's editors are CodeMirror 6 ones). */
  private mark(problems: Problem[]): void {
    const cm = this.editor as CodeEditor.IEditor & {
      editor?: EditorView;
      injectExtension?(ext: unknown): void;
    };
    const view = cm.editor;
    if (!view?.state) {
      return; // another editor: the list alone
    }
    if (!this.gutter) {
      cm.injectExtension?.(lintGutter()); // a marker beside each problem's line
      this.gutter = true;
    }
    view.dispatch(setDiagnostics(view.state, diagnosticsFor(view.state.doc, problems)));
  }

  private goTo({ line, column }: Problem): void {
    const position = { line: Math.max(0, (line ?? 1) - 1), column: Math.max(0, (column ?? 1) - 1) };
    this.editor.setCursorPosition(position);
    this.editor.revealPosition(position);
    this.editor.focus();
  }
}

export class YamlTools implements DocumentRegistry.WidgetExtension {
  constructor(private readonly env: YamlToolsEnv) {}

  createNew(widget: Widget, context: DocumentRegistry.Context): IDisposable {
    const doc = widget as EditorWidget;
    if (!/\.ya?ml$/i.test(context.path) || !doc.content.editor) {
      return { isDisposed: true, dispose: () => undefined }; // nothing added
    }
    const problems = new Problems(doc.content.editor);
    (doc.layout as BoxLayout).addWidget(problems);
    const run = async (submit: boolean) => {
      const path = context.path;
      const spec = context.model.toString(); // what the editor shows, saved or not
      const pool = this.env.pool();
      try {
        if (submit) {
          const { id } = await this.env.client.submit(spec, pool ? { pool } : {});
          problems.clear();
          this.env.submitted(id, path);
        } else {
          await this.env.client.validate(spec, pool ? { pool } : {});
          problems.report(`${path} is a valid workflow`, []);
        }
      } catch (e) {
        if (e instanceof ApiError && (e.status === 400 || e.status === 422)) {
          const found = problemsOf(relocated(e, path));
          problems.report(
            `${found.length} problem${found.length === 1 ? '' : 's'} in ${path}`,
            found
          );
        } else {
          this.env.notifyError(`Could not ${submit ? 'submit' : 'validate'} ${path}`, e);
        }
      }
    };
    const validate = new ToolbarButton({
      label: 'Validate',
      className: 'osmo-yaml-validate',
      tooltip: 'Check this workflow spec with the OSMO server (nothing is submitted)',
      onClick: () => void run(false)
    });
    const submit = new ToolbarButton({
      label: 'Submit',
      className: 'osmo-yaml-submit',
      tooltip: 'Submit this workflow spec to OSMO',
      onClick: () => void run(true)
    });
    doc.toolbar.insertItem(10, 'osmo-validate', validate);
    doc.toolbar.insertItem(11, 'osmo-submit', submit);
    const parts = [validate, submit, problems];
    return {
      get isDisposed() {
        return parts.every(p => p.isDisposed);
      },
      dispose: () => parts.forEach(p => p.dispose())
    };
  }
}
