/**
 * The code example in docs-pagemap.md runs as written and prints what the document says.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import { PACKAGE, runChild } from './helpers/child';
import { kernel, skipIf, unavailable } from './helpers/memtypes';

describe('docs-pagemap.md', function () {
  it('its example prints what the document shows', function () {
    skipIf(this, unavailable(undefined, 'WP_ASYNC') ?? (kernel().pagemapScan.supported ? undefined : 'PAGEMAP_SCAN is unsupported'));
    const doc = fs.readFileSync(path.resolve(__dirname, '..', '..', 'docs-pagemap.md'), 'utf8');
    const blocks = [...doc.matchAll(/```(\w*)\n([\s\S]*?)```/g)];
    const code = blocks.find((b) => b[1] === 'js')?.[2];
    const shown = blocks.find((b, i) => i > 0 && b[1] === '' && blocks[i - 1][1] === 'js')?.[2];
    expect(code).to.be.a('string');
    expect(shown).to.be.a('string');
    const script = (code as string).replace("require('userfaultfd')", `require(${JSON.stringify(PACKAGE)})`);
    const r = runChild(script, { timeoutMs: 15000 });
    expect(r.timedOut).to.equal(false);
    expect(r.stderr).to.equal('');
    expect(r.status).to.equal(0);
    expect(r.stdout).to.equal(shown);
  });
});
