// The roost command: serve / generate / score / eval, parsed by commander.
// Each command is one file in src/cli/ that declares its flags (with their
// descriptions and defaults, which --help lists) and its action; COMMANDS
// below lists them. Usage errors exit 2, runtime errors exit 1; messages go
// to stderr, results and --help to stdout.

// The engine runs its own compute threads; libuv's pool only waits on them and
// must not fight them for the cores (docs/peers.md). Set before anything
// touches the pool.
process.env.UV_THREADPOOL_SIZE ??= '2';

import * as fs from 'node:fs';
import * as path from 'node:path';

import { Command, CommanderError } from 'commander';

import { corpusCommand } from './cli/corpus';
import { datastoreCommand } from './cli/datastore';
import { evalCommand } from './cli/eval';
import { UsageError } from './cli/flags';
import { generateCommand } from './cli/generate';
import { noveltyCommand } from './cli/novelty';
import { scoreCommand } from './cli/score';
import { serveCommand } from './cli/serve';
import { isNativeError } from './native';
import { packageRoot } from './package-root';

/** Every subcommand, in the order --help lists them. A new one is a file in src/cli/ and a line here. */
const COMMANDS: Array<() => Command> = [serveCommand, generateCommand, scoreCommand, evalCommand, datastoreCommand, corpusCommand, noveltyCommand];

/** `roost <name> <usage>` of every command, for the top-level help and a mistyped command. */
function usageLines(root: Command): string {
  return ['usage:', ...root.commands.filter((c) => c.name() !== 'help').map((c) => `  roost ${c.name()} ${c.usage()}`)].join('\n');
}

/** Commander reports instead of exiting, and writes only help (ours are the error messages). */
function configure(cmd: Command): void {
  cmd
    .exitOverride()
    .showSuggestionAfterError(true)
    .allowExcessArguments(false)
    .configureOutput({
      writeOut: (s) => process.stdout.write(s),
      writeErr: (s) => process.stderr.write(s),
      outputError: () => undefined,
    });
  cmd.commands.forEach(configure);
}

function program(): Command {
  const version = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')).version as string;
  const root = new Command('roost')
    .description('Roost: a language-model inference server (serve) and its offline commands (generate, score, eval).')
    .version(version, '--version', 'print the version')
    .usage('<command> [options]');
  for (const make of COMMANDS) root.addCommand(make());
  root.addHelpText('after', `\n${usageLines(root)}\n\nEach command lists its flags and their defaults: roost <command> --help`);
  configure(root);
  return root;
}

/** A commander parse error in the words of the messages before it (tests and scripts match them). */
function commanderMessage(e: CommanderError, command: Command | undefined): string {
  const text = e.message.replace(/^error: /, '');
  if (e.code === 'commander.excessArguments') {
    return `Unexpected argument ${JSON.stringify(command?.args[0] ?? '')}: roost ${command?.name()} takes only flags`;
  }
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** Runs the CLI; resolves to the exit code. */
export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  const root = program();
  const [name] = argv;
  const command = root.commands.find((c) => c.name() === name && name !== 'help');
  const prefix = command ? `roost ${name}: ` : 'roost: ';
  try {
    if (name === undefined) {
      root.outputHelp({ error: true });
      return 2;
    }
    if (!command && name !== 'help' && !name.startsWith('-')) throw new UsageError(`unknown command ${JSON.stringify(name)}\n${usageLines(root)}`);
    await root.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (['commander.helpDisplayed', 'commander.help', 'commander.version'].includes(e.code)) return e.exitCode;
      const see = command ? `roost ${name} --help` : 'roost --help';
      process.stderr.write(`${prefix}${commanderMessage(e, command)}\n(see ${see})\n`);
      return 2;
    }
    if (e instanceof UsageError) {
      process.stderr.write(prefix + e.message + '\n');
      return 2;
    }
    const err = e as Error & { code?: string };
    const code = isNativeError(e) || /^E_/.test(String(err.code ?? '')) ? ` [${err.code}]` : '';
    process.stderr.write(`${prefix}${err?.message ?? String(e)}${code}\n`);
    return 1;
  }
}

/** bin/roost.js calls this: exit code through process.exitCode so stdout drains. */
export function run(): void {
  // A reader that goes away (`roost generate ... | head`) is not an error of ours.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`roost: ${String(e)}\n`);
      process.exitCode = 1;
    },
  );
}

if (require.main === module) run();
