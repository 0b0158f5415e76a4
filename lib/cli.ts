#!/usr/bin/env node
/**
 * The `userfaultfd` command: `userfaultfd probe [--json]` prints what this kernel supports;
 * `userfaultfd demo` lazily restores a memory snapshot (lib/demo.ts).
 * @module
 */
import { FEATURES, FEATURE_NAMES, PAGE_CATEGORY_NAMES } from './constants';
import { probe, type ProbeReport } from './probe';
import { demoCommand } from './demo';

const USAGE = `usage: userfaultfd <command> [options]

commands:
  probe [--json]   what this kernel and machine support for userfaultfd
  demo [--size 256M] [--threads 4] [--js] [--json]
                   lazily restore a memory snapshot, serving its page faults from a file
`;

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
  lines.push(`  userfaultfd(2) UFFD_USER_MODE_ONLY   ${mark(o.syscallUserModeOnly.ok)} ${o.syscallUserModeOnly.error ?? ''}`.trimEnd());
  lines.push(`  /dev/userfaultfd                     ${mark(o.device.ok)} ${o.device.error ?? ''}`.trimEnd());
  lines.push(`  vm.unprivileged_userfaultfd          ${report.unprivilegedUserfaultfd ?? 'absent'}`);
  lines.push('');
  lines.push(`features (0x${report.featureBits.toString(16)})`);
  for (const name of FEATURE_NAMES) {
    const denied = report.denied[name] ? ` (the kernel has it, but refuses it to this process: ${report.denied[name]})` : '';
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

export function main(argv: string[]): number | Promise<number> {
  const [command, ...rest] = argv;
  if (command === 'demo') return demoCommand(rest);
  if (command === 'probe') {
    const unknown = rest.filter((a) => a !== '--json');
    if (unknown.length > 0) {
      process.stderr.write(`unknown option ${unknown[0]}\n${USAGE}`);
      return 2;
    }
    const report = probe();
    process.stdout.write(`${rest.includes('--json') ? toJson(report) : table(report)}\n`);
    return 0;
  }
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  process.stderr.write(`unknown command ${command}\n${USAGE}`);
  return 2;
}

if (require.main === module) {
  Promise.resolve(main(process.argv.slice(2))).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
