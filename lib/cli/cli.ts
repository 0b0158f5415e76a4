#!/usr/bin/env node
/**
 * The `userfaultfd` command: `userfaultfd probe [--json]` prints what this kernel supports;
 * `userfaultfd demo` lazily restores a memory snapshot (lib/cli/demo.ts).
 * @module
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FEATURES, FEATURE_NAMES, PAGE_CATEGORY_NAMES } from '../core/constants';
import type { ProbeReport } from '../probe';
import { UsageError, parseOptions } from './args';

const USAGE = `usage: userfaultfd <command> [options]

commands:
  probe [--json]   what this kernel and machine support for userfaultfd
  demo [--size 256M] [--threads 4] [--seed 1] [--js] [--json]
                   lazily restore a memory snapshot, serving its page faults from a file
                   (userfaultfd demo --help for its options)

options:
  --help, -h       this text
  --version, -v    the package version
`;

/** The package's version, from its package.json (three levels above dist/lib/cli/cli.js). */
function version(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

function toJson(report: ProbeReport): string {
  return JSON.stringify(report, (_key, value: unknown) => (typeof value === 'bigint' ? `0x${value.toString(16)}` : value), 2);
}

function mark(ok: boolean): string {
  return ok ? 'yes' : 'no ';
}

function formatSize(bytes: number): string {
  if (bytes >= 1 << 30) return `${bytes / (1 << 30)} GiB`;
  if (bytes >= 1 << 20) return `${bytes / (1 << 20)} MiB`;
  return `${bytes / 1024} KiB`;
}

function table(report: ProbeReport): string {
  const lines: string[] = [];
  lines.push(`userfaultfd on Linux ${report.kernel} (${report.arch})`);
  lines.push('');
  lines.push('opening');
  const o = report.open;
  lines.push(`  userfaultfd(2)                       ${mark(o.syscall.ok)} ${o.syscall.error ?? ''}`.trimEnd());
  // EINVAL for the flag alone means the kernel does not know it: say so, it is the common case.
  const umo = o.syscallUserModeOnly.error === 'EINVAL' ? 'EINVAL (the kernel lacks the flag: Linux < 5.11)' : (o.syscallUserModeOnly.error ?? '');
  lines.push(`  userfaultfd(2) UFFD_USER_MODE_ONLY   ${mark(o.syscallUserModeOnly.ok)} ${umo}`.trimEnd());
  lines.push(`  /dev/userfaultfd                     ${mark(o.device.ok)} ${o.device.error ?? ''}`.trimEnd());
  lines.push(`  vm.unprivileged_userfaultfd          ${report.unprivilegedUserfaultfd ?? 'absent'}`);
  lines.push('');
  lines.push(`features (0x${report.featureBits.toString(16)})`);
  for (const name of FEATURE_NAMES) {
    const denied = report.denied[name]
      ? ` (the kernel has it, but refuses it to this process: ${report.denied[name]})`
      : report.broken[name]
        ? ` (${report.broken[name]})`
        : '';
    lines.push(`  ${name.padEnd(24)} ${mark(report.features[name])} since ${FEATURES[name].since}${denied}`);
  }
  if (report.unknownFeatureBits !== 0n) lines.push(`  unknown bits             0x${report.unknownFeatureBits.toString(16)}`);
  lines.push(`ioctls                     ${report.ioctls.join(' ') || 'none'}`);
  lines.push('');
  lines.push('memory');
  lines.push(`  page size                ${formatSize(report.pageSize)}`);
  lines.push(`  THP                      ${report.thp ? `${formatSize(report.thp.size)} (${report.thp.mode ?? '?'})` : 'no'}`);
  lines.push(`  hugetlb default          ${formatSize(report.hugetlb.defaultSize)}`);
  for (const pool of report.hugetlb.pools) {
    lines.push(`  hugetlb ${formatSize(pool.size).padEnd(16)} ${pool.free} free of ${pool.total}`);
  }
  lines.push('');
  const scan = report.pagemapScan;
  lines.push(`PAGEMAP_SCAN               ${mark(scan.supported)} ${scan.error ?? ''}`.trimEnd());
  if (scan.supported) {
    lines.push(`  categories               ${PAGE_CATEGORY_NAMES.filter((c) => scan.categories[c]).join(' ')}`);
  }
  return lines.join('\n');
}

/**
 * Runs one command; resolves to the exit code. The commands load the addon only when they run
 * (dynamic imports), so `--help` and `--version` work even where it cannot be loaded.
 */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === 'demo') {
    const { demoCommand } = await import('./demo');
    return demoCommand(rest);
  }
  if (command === 'probe') {
    let values: Record<string, string | boolean | undefined>;
    try {
      values = parseOptions(rest, { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } });
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      process.stderr.write(`userfaultfd probe: ${err.message}\n${USAGE}`);
      return 2;
    }
    if (values.help === true) {
      process.stdout.write(USAGE);
      return 0;
    }
    const { probe } = await import('../probe');
    const report = probe();
    process.stdout.write(`${values.json === true ? toJson(report) : table(report)}\n`);
    return 0;
  }
  if (command === '--version' || command === '-v' || command === 'version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  process.stderr.write(`userfaultfd: unknown command '${command}'\n${USAGE}`);
  return 2;
}

/**
 * A runtime error as one line, `userfaultfd: <message> (<code>)`: a user needs what failed and
 * its code, not a stack into the library (set NODE_DEBUG=userfaultfd for the stack).
 */
export function errorLine(err: unknown): string {
  const message = (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, ' ').trim().replace(/^userfaultfd: /, '');
  const code = (err as { code?: unknown } | null)?.code;
  return `userfaultfd: ${message}${typeof code === 'string' && !message.includes(`(${code})`) ? ` (${code})` : ''}`;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`${errorLine(err)}\n`);
      if (/\buserfaultfd\b/.test(process.env.NODE_DEBUG ?? '') && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
      process.exitCode = 1;
    },
  );
}
