/**
 * The .d.ts a user compiles against, checked as a user's project would: a temporary project with
 * `"module": "nodenext"`, the package linked into its node_modules, tsc with skipLibCheck off.
 * The 'error' event's argument, UffdError's code union, the exported code constants, that
 * @internal members are stripped, and that `using` with `"target": "ES2022"` runs on this Node.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { skipIf } from './helpers/memtypes';

const ROOT = path.resolve(__dirname, '..', '..');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

const CONSUMER = `
import { Userfaultfd, Mapping, FaultError, UffdError, ERR_UFFD_CLOSED, ERR_UFFD_UNMAPPED, type UffdErrorCode } from 'userfaultfd';

// The 'error' listener gets the engine's FaultError (or what another listener threw).
function listen(uffd: Userfaultfd): void {
  uffd.on('error', (err) => {
    const fault: FaultError | Error = err;
    if (err instanceof FaultError) console.log(err.address, err.threadId, err.code);
    void fault;
  });
}

// UffdError.code: the known codes narrow, and any errno name the kernel returns still fits.
function describe(err: UffdError): string {
  const known: UffdErrorCode = 'EEXIST';
  const other: UffdErrorCode = 'EHWPOISON';
  switch (err.code) {
    case 'EEXIST':
    case 'ERR_UFFD_DEADLOCK_GUARD':
      return err.code + known + other;
    default:
      return err.code;
  }
}

{
  using uffd = Userfaultfd.open();
  listen(uffd);
  // @ts-expect-error: an @internal member, not in the .d.ts
  void uffd.native;
  using mem = Mapping.anonymous(4096);
  void mem;
  void describe;
  globalThis.process.stdout.write(String(uffd.closed) + '\\n');
  (globalThis as { kept?: Userfaultfd }).kept = uffd;
}
const kept = (globalThis as { kept?: Userfaultfd }).kept;
try {
  kept?.copy(0n, Buffer.alloc(4096));
} catch (err) {
  console.log('closed by using:', kept?.closed, (err as { code?: string }).code === ERR_UFFD_CLOSED, ERR_UFFD_UNMAPPED);
}
`;

describe('types: the .d.ts as a user compiles it', function () {
  this.timeout(120000);
  let dir: string | undefined;

  before(function () {
    // The VMs (test/vm) get only the modules the tests load at run time: no TypeScript.
    skipIf(this, fs.existsSync(TSC) && fs.existsSync(path.join(ROOT, 'node_modules', '@types', 'node')) ? undefined : 'TypeScript and @types/node are not installed here');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uffd-types-'));
    fs.mkdirSync(path.join(dir, 'node_modules', '@types'), { recursive: true });
    fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'userfaultfd'));
    fs.symlinkSync(path.join(ROOT, 'node_modules', '@types', 'node'), path.join(dir, 'node_modules', '@types', 'node'));
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
    fs.writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'nodenext', target: 'ES2022', strict: true, skipLibCheck: false, types: ['node'], outDir: 'out' },
        files: ['index.ts'],
      }),
    );
    fs.writeFileSync(path.join(dir, 'index.ts'), CONSUMER);
  });

  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('compiles with "module": "nodenext", and `using` with "target": "ES2022" runs on this Node', () => {
    const project = dir as string;
    const tsc = spawnSync(process.execPath, [TSC, '-p', project], { encoding: 'utf8', timeout: 110000 });
    expect(tsc.status, tsc.stdout + tsc.stderr).to.equal(0);
    const run = spawnSync(process.execPath, [path.join(project, 'out', 'index.js')], { encoding: 'utf8', timeout: 15000, cwd: project });
    expect(run.status, run.stderr).to.equal(0);
    expect(run.stdout).to.equal(`false\nclosed by using: true true ERR_UFFD_UNMAPPED\n`);
  });
});
