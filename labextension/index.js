// The Workshop kernel's cells: line magics (%expect, %target ...) and cell magics
// (%%chroot ...) at the top, the bash body, then %%check sections, each a script of
// its own.  Bash's mode alone reads an apostrophe in `%expect stdout-contains it's`
// as an open string that turns the rest of the cell red, and a %%check section as
// more of the body.  This mode gives magic lines their own tokens and starts bash
// afresh below each of them.  The kernel names it in language_info.codemirror_mode
// ({name: "workshop", mime: "text/x-sh"}): without this extension, bash's mode.
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { LanguageSupport, StreamLanguage } from '@codemirror/language';
import { shell } from '@codemirror/legacy-modes/mode/shell';

const MAGIC = /^\s*%%?[A-Za-z_][\w-]*/;
const CHECK = /^\s*%%check(\s|$)/;

const workshop = {
  name: 'workshop',
  startState: () => ({ shell: shell.startState(), magic: false, body: false, named: false }),
  copyState: state => ({ ...state, shell: { tokens: state.shell.tokens.slice() } }),
  token(stream, state) {
    if (stream.sol()) {
      // magics stand above the body; below it only %%check opens a section
      state.magic = stream.match(state.body ? CHECK : MAGIC, false) !== null;
      state.named = false;
      if (state.magic) {
        state.shell = shell.startState(); // no string or heredoc of the lines above goes on
        state.body = false;
      }
    }
    if (!state.magic) {
      if (!stream.sol() || !stream.match(/^\s*$/, false)) {
        state.body = true;
      }
      return shell.token(stream, state.shell);
    }
    if (stream.eatSpace()) {
      return null;
    }
    if (!state.named) {
      state.named = true;
      stream.match(/%%?[\w-]+/);
      return 'meta';
    }
    if (stream.match(/--?[\w-]+/)) {
      return 'attribute';
    }
    stream.match(/\S+/); // arguments are words as written: quotes, $ and / mean nothing here
    return 'string-2';
  },
  languageData: { commentTokens: { line: '#' } }
};

export default {
  id: 'workshop-highlight:plugin',
  description: 'Highlighting for Workshop kernel cells',
  autoStart: true,
  requires: [IEditorLanguageRegistry],
  activate: (app, languages) => {
    languages.addLanguage({
      name: 'workshop',
      displayName: 'Workshop (bash with magics)',
      mime: 'text/x-workshop',
      load: async () => new LanguageSupport(StreamLanguage.define(workshop))
    });
  }
};
