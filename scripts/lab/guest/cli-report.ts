/**
 * Runs in the lab guest: one virtio-mmio CLI command in this process, its
 * output reported as a result line (kind 'cli', with argv, exit status,
 * stdout and stderr) and echoed on the console as a user would see it.
 *
 *   [CLI_AS_UID=<uid>] node scripts/lab/guest/cli-report.js <command> [args...]
 */
import { runCli } from '../../../lib/cli/main';
import { report, runMain } from './report';

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  // CLI_AS_UID: drop root first, to see what a user without access is told.
  const uid = process.env.CLI_AS_UID;
  if (uid) process.setuid!(Number(uid));
  let stdout = '';
  let stderr = '';
  const status = await runCli(argv, {
    stdout: { write: (t: string) => (stdout += t) },
    stderr: { write: (t: string) => (stderr += t) },
  });
  process.stdout.write(`# virtio-mmio ${argv.join(' ')}\n${stdout}${stderr}# exit ${status}\n`);
  report({ kind: 'cli', argv, status, stdout, stderr });
}

runMain(main);
