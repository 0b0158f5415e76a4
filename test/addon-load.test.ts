/**
 * Loading the package where the native addon is missing (install scripts skipped, a clone never
 * built): one coded error that says what to run, instead of node-gyp-build's raw stack; and the
 * CLI's --help and --version, which need no addon, still work. Run in child processes against a
 * copy of dist/lib and package.json with no build/ and no prebuilds/ beside them.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');

describe('a package without its native addon', () => {
  let pkg: string;

  before(() => {
    pkg = fs.mkdtempSync(path.join(os.tmpdir(), 'uffd-no-addon-'));
    fs.cpSync(path.join(ROOT, 'dist', 'lib'), path.join(pkg, 'dist', 'lib'), { recursive: true });
    fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(pkg, 'package.json'));
    // node-gyp-build itself must be found: it is what fails to find the addon.
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'));
  });

  after(() => fs.rmSync(pkg, { recursive: true, force: true }));

  const node = (args: string[]) => spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 15000, killSignal: 'SIGKILL', cwd: pkg });

  it('require() throws one ERR_UFFD_ADDON_LOAD error naming what to run', () => {
    const r = node([
      '-e',
      `try { require(${JSON.stringify(path.join(pkg, 'dist', 'lib', 'index.js'))}); console.log('loaded'); }
       catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, cause: e.cause && e.cause.message })); }`,
    ]);
    expect(r.status, r.stderr).to.equal(0);
    const e = JSON.parse(r.stdout) as { code: string; message: string; cause: string };
    expect(e.code).to.equal('ERR_UFFD_ADDON_LOAD');
    expect(e.message).to.not.include('\n');
    expect(e.message).to.include(path.join(pkg)).and.include('npm rebuild userfaultfd').and.include('prebuilds');
    // node-gyp-build's own words stay available, first line in the message and whole as the cause.
    expect(e.message).to.include('No native build was found');
    expect(e.cause).to.include('loaded from');
  });

  it('the CLI still answers --help and --version, and a command fails in one line with exit code 1', () => {
    const cli = path.join(pkg, 'dist', 'lib', 'cli', 'cli.js');
    const help = node([cli, '--help']);
    expect(help.status, help.stderr).to.equal(0);
    expect(help.stdout).to.include('usage: userfaultfd');
    const version = node([cli, '--version']);
    expect(version.status, version.stderr).to.equal(0);
    expect(version.stdout.trim()).to.match(/^\d+\.\d+\.\d+/);
    for (const command of [['probe'], ['demo', '--size', '1M']]) {
      const r = node([cli, ...command]);
      expect(r.status, command.join(' ')).to.equal(1);
      expect(r.stderr).to.match(/^userfaultfd: the native addon could not be loaded from .* \(ERR_UFFD_ADDON_LOAD\)\n$/);
      expect(r.stderr).to.include('npm rebuild userfaultfd');
    }
  });
});
