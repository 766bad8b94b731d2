/**
 * Validate, Submit and Submit… in the toolbar of a YAML file's editor. Each lists the spec's
 * problems under the editor, each `LINE:COL field: message` a link that puts the cursor there,
 * and marks them in the text as CodeMirror diagnostics (diagnostics.ts); a successful submit
 * opens the workflow in the panel. Validate and Submit use the options this file was last
 * submitted with (pool, priority, `--set` values: submitchoices.ts); Submit… asks for them in
 * the submit dialog first.
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
import { SubmitChoices, submitOptions } from './submitchoices';

export interface YamlToolsEnv {
  client: OsmoClient;
  /** The options for `path`: those it was last submitted with, or (`ask`) the submit dialog's,
   * which starts from them (null: cancelled). */
  choices(path: string, ask: boolean): Promise<SubmitChoices | null>;
  /** A workflow was submitted with `choices`: remember them and show it. */
  submitted(id: string, path: string, choices: SubmitChoices): void;
  notifyError(title: string, error: unknown): void;
}

type Action = 'validate' | 'submit' | 'ask';

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
    const run = async (action: Action) => {
      const path = context.path;
      const submit = action !== 'validate';
      try {
        const choices = await this.env.choices(path, action === 'ask');
        if (!choices) {
          return; // the dialog was cancelled
        }
        const spec = context.model.toString(); // what the editor shows, saved or not
        if (submit) {
          const { id } = await this.env.client.submit(spec, submitOptions(choices));
          problems.clear();
          this.env.submitted(id, path, choices);
        } else {
          await this.env.client.validate(spec, submitOptions(choices));
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
      tooltip:
        'Check this workflow spec with the OSMO server, with its last submit options (nothing is submitted)',
      onClick: () => void run('validate')
    });
    const submit = new ToolbarButton({
      label: 'Submit',
      className: 'osmo-yaml-submit',
      tooltip: 'Submit this workflow spec to OSMO with the options it was last submitted with',
      onClick: () => void run('submit')
    });
    const ask = new ToolbarButton({
      label: 'Submit…',
      className: 'osmo-yaml-submit-options',
      tooltip: 'Choose pool, priority and --set values, then submit this workflow spec',
      onClick: () => void run('ask')
    });
    doc.toolbar.insertItem(10, 'osmo-validate', validate);
    doc.toolbar.insertItem(11, 'osmo-submit', submit);
    doc.toolbar.insertItem(12, 'osmo-submit-options', ask);
    const parts = [validate, submit, ask, problems];
    return {
      get isDisposed() {
        return parts.every(p => p.isDisposed);
      },
      dispose: () => parts.forEach(p => p.dispose())
    };
  }
}
