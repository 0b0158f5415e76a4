#!/usr/bin/env node
// Run the package's mocha suite inside qemu-system VMs (TCG) on several Debian kernels.
//
//   node test/vm/run.mjs [PKG_DIR] [--only NAME[,NAME]] [--grep PATTERN] [--jobs 1|2]
//                        [--timeout SECONDS] [--smp N] [--mem MiB] [--mocha-arg ARG]... [--keep] [--verbose]
//                        [--no-fetch] [--list] [--exec 'SHELL COMMAND'] [--cmdline 'KERNEL ARGS'] [--trace]
//                        [--repeat N] [--stall SECONDS] [--silence SECONDS] [--stress] [--stress-args 'STRESS-NG ARGS']
//
// --timeout is each VM's overall cap (default 2400 s), generous on purpose: a hang is found by the
// absence of progress instead. In the guest, no mocha test started or ended for --stall seconds
// (default 300), or for twice the running test's (speed-scaled) mocha timeout plus 30 s if that
// is longer, is a hang: the guest names the test and the kernel wait channels of node's threads
// (VM-HUNG) and powers off. The guest prints a VM-WAITING line each minute a test runs on, so a
// console silent for --silence seconds (default 180) means a dead VM, which the host kills.
//
// --stress runs stress-ng beside the VMs (default '--cpu 2 --io 1 --vm 1 --vm-bytes 256m'; the
// runner apt-get installs stress-ng if missing when run as root), to check that the suite holds
// on a busy machine. It is stopped when the runner ends, however it ends, and carries its own
// --timeout in case the runner is killed.
//
// --cmdline appends to the kernel command line (e.g. 'loglevel=7').
// --trace prints "VM-TEST-START <title>" before each test, to place a crash or a hang.
// --repeat N boots each selected kernel N times with the same initramfs (flake hunting).
//
// --exec runs a shell command in /pkg instead of mocha (e.g. 'node dist/lib/cli/cli.js probe');
// its output is printed and its exit status decides.
//
// --jobs defaults to 2: each VM has one vCPU (-smp 1, which also makes fault round trips
// cheaper under TCG) and the machines have two cores.
//
// PKG_DIR defaults to the repo root (this file's ../..).  It must be built already
// (`npm ci && npm run build`: dist/ and build/Release/*.node for the host, x86_64).
// For arm64 the addon is cross-built into a scratch dir by build-arm64.sh.
//
// Prints one line per kernel:
//   vm <arch> <kernel> <pagesize>: passed N, failed N, skipped N, <seconds>s [<why>]
// and exits non-zero if any kernel failed, ran no test, or timed out.
//
// Only node built-ins: this runs before (and independently of) the package's own deps.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CACHE = process.env.UFFD_VM_CACHE || path.join(os.homedir(), '.cache', 'userfaultfd-vm');

// The matrix.  Names match the directories fetch.sh fills under $CACHE/kernels.  Longest first
// (idle suite times), so that --jobs VMs at a time finish close together.
const KERNELS = [
  { name: 'arm64-6.12', arch: 'arm64', pagesize: '4k' },
  { name: 'arm64-6.12-16k', arch: 'arm64', pagesize: '16k' },
  { name: 'arm64-6.1', arch: 'arm64', pagesize: '4k' },
  { name: 'x64-6.12', arch: 'x64', pagesize: '4k' },
  { name: 'arm64-5.10', arch: 'arm64', pagesize: '4k' },
  { name: 'x64-6.1', arch: 'x64', pagesize: '4k' },
  { name: 'x64-5.10', arch: 'x64', pagesize: '4k' },
];

// ------------------------------------------------------------------ options
function parseArgs(argv) {
  const o = { pkg: null, only: null, grep: null, jobs: 2, timeout: 2400, stall: 300, silence: 180, smp: 1, mem: 4096,
              mochaArgs: [], keep: false, verbose: false, fetch: true, list: false, stress: false,
              stressArgs: '--cpu 2 --io 1 --vm 1 --vm-bytes 256m' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { if (i + 1 >= argv.length) die(`${a} needs a value`); return argv[++i]; };
    if (a === '--only') o.only = val().split(',');
    else if (a === '--grep') o.grep = val();
    else if (a === '--jobs') o.jobs = Math.max(1, Math.min(4, Number(val()) || 1));
    else if (a === '--timeout') o.timeout = Number(val());
    else if (a === '--stall') o.stall = Number(val());
    else if (a === '--silence') o.silence = Number(val());
    else if (a === '--stress') o.stress = true;
    else if (a === '--stress-args') { o.stress = true; o.stressArgs = val(); }
    else if (a === '--smp') o.smp = Number(val());
    else if (a === '--mem') o.mem = Number(val());
    else if (a === '--cmdline') o.cmdline = val();
    else if (a === '--trace') o.trace = true;
    else if (a === '--repeat') o.repeat = Math.max(1, Number(val()) || 1);
    else if (a === '--mocha-arg') o.mochaArgs.push(val());
    else if (a === '--exec') o.exec = val();
    else if (a === '--keep') o.keep = true;
    else if (a === '--verbose' || a === '-v') o.verbose = true;
    else if (a === '--no-fetch') o.fetch = false;
    else if (a === '--list') o.list = true;
    else if (a === '--help' || a === '-h') { console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1).filter((l, i, a) => a.slice(0, i + 1).every((x) => x.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n')); process.exit(0); }
    else if (a.startsWith('-')) die(`unknown option ${a}`);
    else o.pkg = a;
  }
  for (const k of ['timeout', 'stall', 'silence']) if (!(o[k] > 0)) die(`--${k} needs a number of seconds`);
  o.pkg = path.resolve(o.pkg || path.join(HERE, '..', '..'));
  return o;
}

function die(msg) { console.error(`vm: ${msg}`); process.exit(2); }
function log(msg) { console.error(`vm: ${msg}`); }

// Run a helper script synchronously, failing loudly.
// The helpers use `node` from PATH (for its version, and as the x86_64 guest's node): make that
// the node running this script.
const HELPER_ENV = { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH}`, NODE_BIN: process.execPath };
function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', env: HELPER_ENV, ...opts });
  if (r.status !== 0) die(`${cmd} ${args.join(' ')} failed (status ${r.status}${r.signal ? ', ' + r.signal : ''})`);
  return r.stdout;
}

// ------------------------------------------------------------------ node_modules closure
// The guest gets only what the tests load at run time: mocha, chai, node-gyp-build, the
// package's dependencies, and whatever bare specifier the compiled tests or .mocharc name,
// each with its full dependency closure.  This keeps typescript, eslint, node-gyp, @types...
// out of the initramfs (every MB is copied by an emulated CPU at boot).
function moduleClosure(pkgDir) {
  const nm = path.join(pkgDir, 'node_modules');
  const roots = new Set(['mocha', 'chai', 'node-gyp-build']);
  const pj = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
  for (const d of Object.keys({ ...pj.dependencies, ...pj.optionalDependencies })) roots.add(d);
  // Bare specifiers in the compiled tests, the mocharc and the package's own code.
  const texts = [];
  for (const f of fs.readdirSync(pkgDir)) if (/^\.mocharc/.test(f)) texts.push(fs.readFileSync(path.join(pkgDir, f), 'utf8'));
  const walk = (d) => {
    if (!fs.existsSync(d)) return;
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(c|m)?js$/.test(e.name)) texts.push(fs.readFileSync(p, 'utf8'));
    }
  };
  walk(path.join(pkgDir, 'dist'));
  const spec = /(?:require\s*\(\s*|from\s+|import\s*\(\s*|^\s*-\s*|require:\s*)['"]?((?:@[\w.-]+\/)?[\w.-]+)/gm;
  for (const t of texts) for (const m of t.matchAll(spec)) {
    if (fs.existsSync(path.join(nm, m[1], 'package.json'))) roots.add(m[1]);
  }
  // Walk dependencies with node's lookup rule: nearest node_modules up to the package root.
  const found = new Set();
  const resolve = (name, fromDir) => {
    for (let d = fromDir; ; d = path.dirname(d)) {
      const cand = path.join(d, 'node_modules', name);
      if (fs.existsSync(path.join(cand, 'package.json'))) return cand;
      if (d === pkgDir || d === path.dirname(d)) return null;
    }
  };
  const visit = (dir) => {
    if (found.has(dir)) return;
    found.add(dir);
    const p = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    for (const [deps, optional] of [[p.dependencies, false], [p.optionalDependencies, true], [p.peerDependencies, true]]) {
      for (const n of Object.keys(deps || {})) {
        const r = resolve(n, dir);
        if (r) visit(r);
        else if (!optional) log(`warning: ${path.relative(pkgDir, dir)} needs ${n}, not installed`);
      }
    }
  };
  for (const r of roots) {
    const d = resolve(r, pkgDir);
    if (d) visit(d);
    else if (['mocha', 'chai', 'node-gyp-build'].includes(r)) die(`${r} is not installed in ${nm} (npm ci?)`);
  }
  return [...found];
}

// A copy of the package as the guest sees it under /pkg, without the addon (added per arch).
function stageCommon(pkgDir, dest) {
  const skip = new Set(['node_modules', '.git', 'build', 'prebuilds', 'coverage', '.nyc_output']);
  fs.mkdirSync(dest, { recursive: true });
  for (const e of fs.readdirSync(pkgDir)) {
    if (skip.has(e)) continue;
    fs.cpSync(path.join(pkgDir, e), path.join(dest, e), { recursive: true });
  }
  const mods = moduleClosure(pkgDir);
  for (const m of mods) {
    fs.cpSync(m, path.join(dest, path.relative(pkgDir, m)), { recursive: true,
      // nested node_modules are copied by their own visit, only if needed
      filter: (src) => src === m || !path.relative(m, src).split(path.sep).includes('node_modules') });
  }
  return mods.length;
}

function duMB(dir) {
  let n = 0;
  const walk = (d) => { for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p); else if (e.isFile()) n += fs.statSync(p).size;
  } };
  walk(dir);
  return (n / 1048576).toFixed(1);
}

// ------------------------------------------------------------------ one VM
function qemuCommand(k, cpio, opts) {
  const kernel = path.join(CACHE, 'kernels', k.name, 'vmlinuz');
  // 4 GiB by default, not 2: the suite reserves 64 default-size huge pages, which is 2 GiB on
  // the 16K kernel (32 MiB huge pages).  Guest RAM is allocated lazily by qemu.
  const common = ['-nographic', '-no-reboot', '-nic', 'none', '-m', String(opts.mem), '-smp', String(opts.smp),
                  '-kernel', kernel, '-initrd', cpio];
  // quiet loglevel=4: kernel chatter would interleave with mocha's output on the same console,
  // but errors (an OOM kill, a BUG) are kept.
  if (k.arch === 'arm64') {
    // Under `-cpu max` the test process died at random points (SIGSEGV, SIGILL, once V8's
    // "unreachable code"), even inside the first, trivial test, in about 5 of 6 CI runs; under
    // named cores it passes whole. Cortex-A72 has no 16 KiB granule, so the 16K kernel runs on
    // Neoverse-N1 (ARMv8.2, which has it). UFFD_VM_ARM64_CPU overrides either.
    const cpu = process.env.UFFD_VM_ARM64_CPU ?? (k.pagesize === '16k' ? 'neoverse-n1' : 'cortex-a72');
    return ['qemu-system-aarch64', ['-M', 'virt', '-cpu', cpu, ...common,
            '-append', `console=ttyAMA0 panic=-1 quiet loglevel=4 ${opts.cmdline || ''}`]];
  }
  return ['qemu-system-x86_64', ['-accel', 'tcg', '-M', 'q35', '-cpu', 'max', ...common,
          '-append', `console=ttyS0 panic=-1 quiet loglevel=4 ${opts.cmdline || ''}`]];
}

// `timeout` runs in its own process group (detached) with qemu in it: kill the group, not
// only `timeout`, or qemu would be orphaned and keep running.
function killGroup(child) {
  try { process.kill(-child.pid, 'SIGKILL'); } catch { try { child.kill('SIGKILL'); } catch {} }
}

// VMs still running, so that Ctrl-C / SIGTERM of this script takes them down too.
const live = new Set();
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { for (const c of live) killGroup(c); stopStress(); process.exit(130); });
}

// ------------------------------------------------------------------ --stress
let stress = null;

// stress-ng from the distribution; installed here if missing and we are root.
function ensureStressNg() {
  const has = () => spawnSync('sh', ['-c', 'command -v stress-ng'], { stdio: 'ignore' }).status === 0;
  if (has()) return;
  if (process.getuid() !== 0) die('--stress needs stress-ng (apt-get install stress-ng), or run as root to have it installed');
  log('installing stress-ng');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => spawnSync('apt-get', ['install', '-y', '-qq', 'stress-ng'], { stdio: ['ignore', 'ignore', 'inherit'], env, timeout: 600_000 }).status === 0;
  if (!install()) {
    spawnSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env, timeout: 600_000 });
    if (!install() || !has()) die('could not install stress-ng');
  }
}

// Starts the load in its own process group. Its own --timeout ends it even if this runner is
// SIGKILLed and cannot stop it.
function startStress(opts, work, seconds) {
  ensureStressNg();
  const args = [...opts.stressArgs.split(/\s+/).filter(Boolean), '--timeout', `${seconds}s`, '--temp-path', work];
  const logFile = path.join(work, 'stress-ng.log');
  const fd = fs.openSync(logFile, 'w');
  stress = spawn('stress-ng', args, { stdio: ['ignore', fd, fd], detached: true });
  fs.closeSync(fd);
  stress.on('exit', (code, sig) => { if (stress) log(`stress-ng ended early (${sig ?? code}): see ${logFile}`); stress = null; });
  log(`stress: stress-ng ${args.join(' ')} (pid ${stress.pid}) beside the VMs`);
}

// Stops the load, whatever happens to the run: called on every way out.
function stopStress() {
  if (!stress) return;
  const s = stress;
  stress = null;
  try { process.kill(-s.pid, 'SIGTERM'); } catch {}
  // stress-ng's workers end within a second of SIGTERM; make sure.
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    try { process.kill(-s.pid, 0); } catch { break; }
    spawnSync('sleep', ['0.2']);
  }
  try { process.kill(-s.pid, 'SIGKILL'); } catch {}
  log('stress: stopped');
}
process.on('exit', stopStress);

function runVM(k, cpio, opts, logFile) {
  return new Promise((resolve) => {
    const [qemu, args] = qemuCommand(k, cpio, opts);
    const t0 = Date.now();
    let bootS = null;
    let buf = '';
    const out = fs.createWriteStream(logFile);
    // Outer hard limit twice over: `timeout -s KILL` (survives even if this script dies) and a
    // JS timer a little later as a belt for the braces.
    const child = spawn('timeout', ['-s', 'KILL', String(opts.timeout), qemu, ...args],
                        { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    live.add(child);
    const timer = setTimeout(() => killGroup(child), (opts.timeout + 15) * 1000);
    // A console silent for opts.silence seconds is a dead guest: a live one prints at least a
    // VM-WAITING line a minute (initramfs.sh's watchdog), so this never cuts a slow test short.
    let lastOutput = Date.now();
    let silentS = null;
    const silence = setInterval(() => {
      if (Date.now() - lastOutput < opts.silence * 1000) return;
      silentS = Math.round((Date.now() - lastOutput) / 1000);
      killGroup(child);
    }, 5000);
    // setEncoding: a multi-byte character split across two reads must not turn into U+FFFD.
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    const onData = (s) => {
      lastOutput = Date.now();
      out.write(s);
      buf += s;
      if (bootS === null && buf.includes('VM-BEGIN')) bootS = (Date.now() - t0) / 1000;
      if (opts.verbose) process.stderr.write(s.replace(/^/gm, `[${k.name}] `));
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearInterval(silence);
      live.delete(child);
      out.end();
      resolve({ code, signal, log: buf, bootS, silentS, totalS: (Date.now() - t0) / 1000 });
    });
  });
}

// The tests' "skip: <title> [why: <reason>]" lines (" xN" after them: a hook skipped N tests),
// counted by reason, most frequent first.
function skipReasons(body) {
  const counts = new Map();
  for (const m of body.matchAll(/^\s*skip: .* \[why: (.*)\](?: x(\d+))?\s*$/gm)) {
    counts.set(m[1], (counts.get(m[1]) ?? 0) + Number(m[2] ?? 1));
  }
  return [...counts].sort((a, b) => b[1] - a[1]);
}

// Read mocha's spec-reporter summary and our markers out of the console log.
function parseLog(k, r, opts) {
  const log = r.log.replace(/\r/g, '');
  const info = /VM-INFO kernel=(\S+) machine=\S+ pagesize=(\S+)/.exec(log);
  const rc = /VM-RESULT rc=(\d+)/.exec(log);
  const body = log.slice(log.indexOf('VM-BEGIN'));
  const num = (re) => { const m = re.exec(body); return m ? Number(m[1]) : 0; };
  const res = {
    kernel: info ? info[1] : k.name, pagesize: info ? info[2] : k.pagesize,
    passed: num(/^\s*(\d+) passing/m), skipped: num(/^\s*(\d+) pending/m), failed: num(/^\s*(\d+) failing/m),
    rc: rc ? Number(rc[1]) : null, bootS: r.bootS, totalS: r.totalS, why: '', failures: '',
    skips: skipReasons(body),
  };
  const timedOut = r.code === 137 || r.code === 124 || r.signal === 'SIGKILL' || r.totalS >= opts.timeout;
  const hung = /VM-HUNG after (.*?) in test: (.*)/.exec(log);
  if (hung && res.rc === null) res.why = `hung (${hung[1]}) in test "${hung[2].trim()}"`;
  else if (r.silentS !== null && res.rc === null) res.why = `no console output for ${r.silentS}s: the guest died`;
  else if (timedOut && res.rc === null) res.why = `timeout after ${opts.timeout}s (the overall cap)`;
  else if (!log.includes('VM-BEGIN')) res.why = 'no boot (no VM-BEGIN marker)';
  else if (res.rc === null) res.why = 'VM ended without VM-RESULT (crash or panic?)';
  else if (res.rc !== 0 && res.failed === 0) res.why = `mocha exit ${res.rc}`;
  else if (opts.exec && res.rc !== 0) res.why = `exit ${res.rc}`;
  else if (!opts.exec && res.passed + res.skipped + res.failed === 0) res.why = 'ran no test';
  res.ok = res.why === '' && res.failed === 0 && res.rc === 0;
  if (opts.exec) res.output = body.slice(body.indexOf('\n') + 1, body.indexOf('VM-RESULT')).trimEnd();
  // Keep mocha's failure report (from "N failing" to our marker) for the summary.
  const fm = /^\s*\d+ failing\s*$/m.exec(body);
  if (fm) res.failures = body.slice(fm.index, body.indexOf('VM-RESULT')).trim();
  else if (!res.ok) res.failures = 'last console lines:\n' + log.trimEnd().split('\n').slice(-40).join('\n');
  return res;
}

// ------------------------------------------------------------------ main
async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.list) { for (const k of KERNELS) console.log(`${k.name}\t${k.arch}\t${k.pagesize}`); return 0; }
  const selected = opts.only ? KERNELS.filter((k) => opts.only.includes(k.name)) : KERNELS;
  // --repeat N boots each selected kernel N times (flake hunting); the initramfs is built once.
  const kernels = Array.from({ length: opts.repeat || 1 }, (_, r) => selected.map((k) => ({ ...k, log: opts.repeat > 1 ? `${k.name}.r${r + 1}` : k.name }))).flat();
  if (!kernels.length) die(`no kernel matches --only ${opts.only}; known: ${KERNELS.map((k) => k.name).join(', ')}`);
  if (process.arch !== 'x64' || process.platform !== 'linux') die('the host must be linux x86_64');

  const t0 = Date.now();
  if (opts.fetch) run('bash', [path.join(HERE, 'fetch.sh')], { stdio: ['ignore', 'inherit', 'inherit'] });

  const pkg = opts.pkg;
  if (!fs.existsSync(path.join(pkg, 'package.json'))) die(`${pkg} has no package.json`);
  if (!fs.existsSync(path.join(pkg, 'dist'))) die(`${pkg}/dist missing: run npm run build first`);
  // The host's x64 addon: build/Release (npm ci / node-gyp), else a prebuildify prebuild.
  const nodesIn = (d) => (fs.existsSync(d) ? fs.readdirSync(d).filter((f) => f.endsWith('.node')).map((f) => path.join(d, f)) : []);
  let hostAddons = nodesIn(path.join(pkg, 'build', 'Release'));
  if (!hostAddons.length) hostAddons = nodesIn(path.join(pkg, 'prebuilds', 'linux-x64'));
  if (kernels.some((k) => k.arch === 'x64') && !hostAddons.length) die(`${pkg}/build/Release/*.node missing: build the addon first`);

  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'uffd-vm-'));
  log(`package ${pkg}, work dir ${work}`);
  const common = path.join(work, 'pkg-common');
  const nmods = stageCommon(pkg, common);
  log(`staged package: ${nmods} modules, ${duMB(common)} MB`);

  // mocha arguments: the package's .mocharc supplies spec, timeout, etc.
  const mochaArgs = [...opts.mochaArgs];
  if (opts.grep) mochaArgs.push('--grep', opts.grep);

  // One initramfs per arch, shared by that arch's kernels.
  const cpios = {};
  for (const arch of [...new Set(kernels.map((k) => k.arch))]) {
    const stage = path.join(work, `pkg-${arch}`);
    fs.cpSync(common, stage, { recursive: true });
    fs.mkdirSync(path.join(stage, 'build', 'Release'), { recursive: true });
    if (arch === 'arm64') {
      const out = path.join(work, 'build-arm64');
      run('bash', [path.join(HERE, 'build-arm64.sh'), pkg, out]);
      for (const f of fs.readdirSync(path.join(out, 'build', 'Release'))) {
        fs.copyFileSync(path.join(out, 'build', 'Release', f), path.join(stage, 'build', 'Release', f));
      }
    } else {
      // Into build/Release whatever its origin: node-gyp-build looks there first.
      for (const f of hostAddons) fs.copyFileSync(f, path.join(stage, 'build', 'Release', path.basename(f)));
    }
    cpios[arch] = path.join(work, `initramfs-${arch}.cpio`);
    // The in-guest watchdog fires before the outer kill so that the log names the hung test.
    run('bash', [path.join(HERE, 'initramfs.sh'), arch, stage, cpios[arch], ...mochaArgs],
        { env: { ...HELPER_ENV, VM_STALL: String(opts.stall), VM_CAP: String(Math.max(10, opts.timeout - 30)), VM_EXEC: opts.exec || '', VM_TRACE: opts.trace ? '1' : '' } });
    log(`initramfs ${arch}: ${(fs.statSync(cpios[arch]).size / 1048576).toFixed(0)} MB`);
  }
  const prepS = (Date.now() - t0) / 1000;
  // The load lasts at most as long as every VM could, one batch of --jobs after another.
  if (opts.stress) startStress(opts, work, Math.ceil(kernels.length / opts.jobs) * (opts.timeout + 60));

  // Run the VMs, at most opts.jobs at once; print each line as soon as its VM is done.
  const results = new Array(kernels.length);
  let next = 0;
  const worker = async () => {
    while (next < kernels.length) {
      const i = next++;
      const k = kernels[i];
      log(`boot ${k.name}`);
      const r = await runVM(k, cpios[k.arch], opts, path.join(work, `${k.log}.log`));
      const res = parseLog(k, r, opts);
      results[i] = { k, ...res };
      if (opts.exec) {
        console.log(`vm ${k.arch} ${res.kernel} ${res.pagesize}: exit ${res.rc ?? '-'}, ${res.totalS.toFixed(0)}s` +
                    (res.why ? ` [${res.why}]` : '') + (res.bootS ? ` (boot ${res.bootS.toFixed(1)}s)` : ''));
        if (res.output) console.log(res.output.replace(/^/gm, '    '));
        continue;
      }
      console.log(`vm ${k.arch} ${res.kernel} ${res.pagesize}: passed ${res.passed}, failed ${res.failed}, skipped ${res.skipped}, ${res.totalS.toFixed(0)}s` +
                  (res.why ? ` [${res.why}]` : '') + (res.bootS ? ` (boot ${res.bootS.toFixed(1)}s)` : ''));
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(opts.jobs, kernels.length) }, worker));
  } finally {
    stopStress();
  }

  // Why tests skipped, per kernel: what each kernel lacks, as the tests said it.
  for (const r of results.filter((x) => x && !opts.exec && x.skipped > 0)) {
    const said = r.skips.reduce((n, [, c]) => n + c, 0);
    console.log(`\nskipped on ${r.k.name} (${r.skipped}):`);
    for (const [why, n] of r.skips.slice(0, 12)) console.log(`  ${String(n).padStart(4)}  ${why}`);
    if (r.skips.length > 12) console.log(`        ... and ${r.skips.length - 12} more reasons`);
    if (said < r.skipped) console.log(`  ${String(r.skipped - said).padStart(4)}  (no [why: ...] line; see the console log)`);
  }

  // Failure details after all lines, so the per-kernel lines stay together.
  const bad = results.filter((r) => !r.ok);
  for (const r of bad) {
    console.log(`\n--- ${r.k.name} (${r.kernel}): ${r.why || `${r.failed} failing`} — console log ${path.join(work, r.k.log + '.log')}`);
    const lines = r.failures.split('\n');
    console.log(lines.slice(0, 300).join('\n') + (lines.length > 300 ? `\n... (${lines.length - 300} more lines)` : ''));
  }
  const tot = (f) => results.reduce((s, r) => s + r[f], 0);
  console.log(`vm total${opts.stress ? ' (with stress-ng beside)' : ''}: kernels ok ${results.length - bad.length}/${results.length}, passed ${tot('passed')}, failed ${tot('failed')}, skipped ${tot('skipped')}, prepare ${prepS.toFixed(0)}s, wall ${((Date.now() - t0) / 1000).toFixed(0)}s`);

  // Keep the logs when something failed (or on --keep); the large cpio files go either way.
  for (const a of Object.values(cpios)) fs.rmSync(a, { force: true });
  if (!bad.length && !opts.keep) fs.rmSync(work, { recursive: true, force: true });
  else {
    for (const d of fs.readdirSync(work)) if (d.startsWith('pkg-') || d === 'build-arm64') fs.rmSync(path.join(work, d), { recursive: true, force: true });
    log(`logs kept in ${work}`);
  }
  return bad.length ? 1 : 0;
}

main().then((rc) => process.exit(rc), (e) => { console.error(e); stopStress(); process.exit(2); });
