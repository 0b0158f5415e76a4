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

  const doc = fs.readFileSync(path.resolve(__dirname, '..', '..', 'docs-move.md'), 'utf8');
  const blocks = [...doc.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);

  it('has its examples', function () {
    expect(blocks.length).to.equal(2);
  });

  blocks.forEach((code, n) => it(`example ${n + 1} runs and prints what its comments say`, function () {
    const expected = [...code.matchAll(/console\.log\(.*\); \/\/ (.*)$/gm)].map((m) => m[1]);
    expect(expected.length).to.be.at.least(2);
    // A block of its own: the child's prelude already declares `uffd`.
    const r = runChild(`{\n${code.replace("require('userfaultfd')", `require(${JSON.stringify(PACKAGE)})`)}\n}`, { timeoutMs: 15000 });
    expect(r.timedOut, r.stderr).to.equal(false);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout.trim().split('\n')).to.deep.equal(expected);
  }));
});
