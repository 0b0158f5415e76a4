/**
 * `userfaultfd demo`: a whole lazy restore in a child process (its faults are served while native
 * threads wait on them, so it could hang: the child has a hard timeout).
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseDemoArgs, parseSize } from '../lib/cli/demo';
import { pageSize } from '../lib/core/sysinfo';
import { runChild } from './helpers/child';
import { scaled } from './helpers/speed';

const CLI = path.resolve(__dirname, '..', 'lib', 'cli', 'cli.js');
const DEMO = path.resolve(__dirname, '..', 'lib', 'cli', 'demo.js');

/** Runs the demo with a temp directory of its own, and lists what it left there. */
function demo(args: string[]): { status: number | null; stdout: string; stderr: string; leftovers: string[] } {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'demo-test-'));
  try {
    const r = spawnSync(process.execPath, [CLI, 'demo', ...args], {
      encoding: 'utf8',
      timeout: scaled(60000),
      killSignal: 'SIGKILL',
      env: { ...process.env, TMPDIR: tmp },
    });
    return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', leftovers: fs.readdirSync(tmp) };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

describe('userfaultfd demo (the CLI)', function () {
  this.timeout(90000);

  for (const handler of [[], ['--js']]) {
    it(`restores 8 MiB served by ${handler.length ? 'a JS handler' : 'the native policy'} and verifies the checksum`, () => {
      const r = demo(['--size', '8M', ...handler]);
      expect(r.status, r.stderr).to.equal(0);
      expect(r.stdout).to.match(/^checksum verified: sha256 [0-9a-f]{64} \(restored memory == snapshot file\)$/m);
      expect(r.stdout).to.match(/^fault latency: p50 [\d.]+ us, p99 [\d.]+ us/m);
      expect(r.stdout).to.match(new RegExp(`^restored in [\\d.]+ s: ${(8 << 20) / pageSize()} faults`, 'm'));
      // stderr is not a terminal here: no progress redraws, just the one final line.
      expect(r.stderr).to.not.include('\r');
      expect(r.stderr.trim().split('\n')).to.have.length(1);
      expect(r.stderr).to.include(`100%  ${(8 << 20) / pageSize()}/${(8 << 20) / pageSize()} pages`);
      expect(r.leftovers, 'the snapshot file is removed').to.deep.equal([]);
    });
  }

  it('--json prints a summary with the checksums and latencies', () => {
    const r = demo(['--size', '4M', '--threads', '2', '--json']);
    expect(r.status, r.stderr).to.equal(0);
    // The summary is the whole output: no progress line on stderr beside it.
    expect(r.stderr).to.equal('');
    const s = JSON.parse(r.stdout) as Record<string, unknown> & { sha256: { file: string; memory: string }; latencyUs: { p50: number; p99: number } };
    expect(s).to.include({ handler: 'native', size: 4 << 20, pages: (4 << 20) / pageSize(), threads: 2, faults: (4 << 20) / pageSize(), verified: true, threadsSawFile: true });
    expect(s.sha256.memory).to.equal(s.sha256.file);
    expect(s.latencyUs.p99).to.be.at.least(s.latencyUs.p50);
  });

  it('reports a restore that differs from the file, and where', () => {
    // The CLI's exit code is `verified ? 0 : 1`; this drives runDemo with a corrupted page.
    const r = runChild(
      `require(ARGS).runDemo({ size: 1 << 20, threads: 2, js: true, json: false, seed: 1, corruptPage: 5 }, console.log)
        .then((s) => { console.log('verified', s.verified, s.threadsSawFile); });`,
      { args: DEMO, timeoutMs: 30000 },
    );
    expect(r.timedOut, r.stderr).to.equal(false);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/^checksum MISMATCH: memory sha256 [0-9a-f]{64}, file sha256 [0-9a-f]{64}$/m);
    expect(r.stdout).to.include(`first differing page at offset ${5 * pageSize()} (0x${(5 * pageSize()).toString(16)})`);
    expect(r.stdout).to.include('verified false false');
  });

  it('rejects bad options with exit code 2, repeating the bad value', () => {
    const cases: [string[], string][] = [
      [['--size', 'lots'], "'lots'"],
      [['--size=1000'], "'1000'"],
      [['--threads', '0'], "'0'"],
      [['--threads=2x'], "'2x'"],
      [['--seed', '0'], "'0'"],
      [['--frobnicate'], "'--frobnicate'"],
      [['--js', 'extra'], "'extra'"],
      [['--size'], "'--size <value>' argument missing"],
    ];
    for (const [bad, says] of cases) {
      const r = demo(bad);
      expect(r.status, bad.join(' ')).to.equal(2);
      expect(r.stderr.split('\n')[0], bad.join(' ')).to.match(/^userfaultfd demo: /).and.include(says);
      expect(r.stderr).to.include('usage: userfaultfd demo');
    }
  });

  it('a runtime error is one line with its code and exit code 1, not a stack', () => {
    const r = spawnSync(process.execPath, [CLI, 'demo', '--size', '1M'], {
      encoding: 'utf8',
      timeout: 60000,
      killSignal: 'SIGKILL',
      env: { ...process.env, TMPDIR: path.join(os.tmpdir(), `no-such-dir-${process.pid}`) },
    });
    expect(r.status, r.stderr).to.equal(1);
    expect(r.stderr).to.match(/^userfaultfd: ENOENT: no such file or directory, mkdtemp '.*' \(ENOENT\)\n$/);
    // NODE_DEBUG=userfaultfd adds the stack, for a bug report.
    const debug = spawnSync(process.execPath, [CLI, 'demo', '--size', '1M'], {
      encoding: 'utf8',
      timeout: 60000,
      killSignal: 'SIGKILL',
      env: { ...process.env, NODE_DEBUG: 'userfaultfd', TMPDIR: path.join(os.tmpdir(), `no-such-dir-${process.pid}`) },
    });
    expect(debug.status).to.equal(1);
    expect(debug.stderr).to.match(/^userfaultfd: ENOENT: .*\n.*Error: ENOENT/).and.match(/\n {4}at /);
  });

  it('--help documents every option, --seed included', () => {
    const r = spawnSync(process.execPath, [CLI, 'demo', '--help'], { encoding: 'utf8', timeout: 15000 });
    expect(r.status).to.equal(0);
    for (const option of ['--size', '--threads', '--seed', '--js', '--json']) expect(r.stdout).to.include(`  ${option} `);
  });
});

describe('userfaultfd (the CLI)', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 15000 });

  it('--version prints the package version', () => {
    const { version } = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-v']) {
      const r = run(flag);
      expect(r.status, r.stderr).to.equal(0);
      expect(r.stdout).to.equal(`${version}\n`);
    }
  });

  it('--help names the commands and --version; an unknown command is exit code 2', () => {
    const r = run('--help');
    expect(r.status).to.equal(0);
    expect(r.stdout).to.include('probe [--json]').and.include('--seed').and.include('--version');
    const bad = run('frobnicate');
    expect(bad.status).to.equal(2);
    expect(bad.stderr).to.match(/^userfaultfd: unknown command 'frobnicate'\n/);
  });
});

describe('demo option parsing', () => {
  it('reads sizes in bytes and binary units', () => {
    expect(parseSize('64M')).to.equal(64 << 20);
    expect(parseSize('64MiB')).to.equal(64 << 20);
    expect(parseSize('8m')).to.equal(8 << 20);
    expect(parseSize('1G')).to.equal(1 << 30);
    expect(parseSize('16k')).to.equal(16384);
    expect(parseSize('4096')).to.equal(4096);
  });

  it('defaults to 256 MiB, 4 threads, the native policy', () => {
    expect(parseDemoArgs([])).to.deep.include({ size: 256 << 20, threads: 4, js: false, json: false });
    expect(parseDemoArgs(['--js', '--threads', '2', '--size', '1M'])).to.deep.include({ size: 1 << 20, threads: 2, js: true });
  });

  it('takes option values as --name value and --name=value alike', () => {
    expect(parseDemoArgs(['--size=8M', '--threads=3', '--seed=7', '--json'])).to.deep.include({ size: 8 << 20, threads: 3, seed: 7, json: true });
    expect(parseDemoArgs(['--size', '8M', '--seed', '7'])).to.deep.include({ size: 8 << 20, seed: 7 });
  });
});
