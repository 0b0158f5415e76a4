/**
 * Command-line parsing for the `userfaultfd` command, on node:util's parseArgs: `--size 8M` and
 * `--size=8M` alike, and usage errors that repeat what was typed.
 * @module
 * @internal
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A usage error: the CLI prints it with the usage text and exits 2. */
export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * parseArgs, strict, no positionals, with its errors as UsageErrors. Its own messages are
 * long-winded ("To specify a positional argument starting with a '-', ..."): these keep the
 * part that names the bad argument.
 */
export function parseOptions(args: string[], options: Options): Record<string, string | boolean | undefined> {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
  } catch (err) {
    const code = (err as { code?: string }).code;
    const message = err instanceof Error ? err.message : String(err);
    const quoted = /'([^']*)'/.exec(message)?.[1];
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`unknown option '${quoted ?? message}'`);
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') throw new UsageError(`unexpected argument '${quoted ?? message}'`);
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const first = message.split('\n')[0].replace(/\.$/, '');
      throw new UsageError(first.charAt(0).toLowerCase() + first.slice(1));
    }
    throw err;
  }
}
