/**
 * The example in docs-move.md runs as written (in a child, as a reader would run it) and prints
 * what its comments say.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PACKAGE, runChild } from './helpers/child';
import { skipIf, unavailable } from './helpers/memtypes';

describe('docs-move.md', function () {
  before(function () {
    skipIf(this, unavailable(undefined, 'MOVE'));
  });

  it('the code example runs and prints what its comments say', function () {
    const doc = fs.readFileSync(path.resolve(__dirname, '..', '..', 'docs-move.md'), 'utf8');
    const block = /```js\n([\s\S]*?)```/.exec(doc);
    expect(block, 'a js example').to.not.equal(null);
    const code = (block as RegExpExecArray)[1];
    const expected = [...code.matchAll(/console\.log\(.*\); \/\/ (.*)$/gm)].map((m) => m[1]);
    expect(expected.length).to.be.at.least(2);
    // A block of its own: the child's prelude already declares `uffd`.
    const r = runChild(`{\n${code.replace("require('userfaultfd')", `require(${JSON.stringify(PACKAGE)})`)}\n}`, { timeoutMs: 15000 });
    expect(r.timedOut, r.stderr).to.equal(false);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout.trim().split('\n')).to.deep.equal(expected);
  });
});
