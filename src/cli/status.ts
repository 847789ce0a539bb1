/** `image-agent status`, `log` and `runs`: what the agent has done. */

import {
  type Command,
  COMMON_HELP,
  EXIT_CODES_HELP,
  parseCommandArgs,
  printJson,
} from "./command.ts";
import { readConfig } from "./context.ts";
import { Ledger } from "../ledger/ledger.ts";
import { formatBytes } from "../log.ts";
import { UsageError } from "../errors.ts";
import type { RunRow } from "../ledger/ledger.ts";
import { formatLocal, nextRunTime } from "../schedule/cron.ts";
import { type DaemonStatus, runningDaemon } from "../schedule/daemon_status.ts";
import { installedEntries } from "../schedule/install.ts";
import type { SchedulerFormat } from "../schedule/files.ts";

function positiveInt(name: string, text: string | undefined, fallback: number) {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) {
    throw new UsageError(
      `--${name} must be a positive whole number, not "${text}"`,
    );
  }
  return n;
}

const SCHEDULER_NAMES: Record<SchedulerFormat, string> = {
  systemd: "the systemd timer",
  cron: "cron (/etc/cron.d/image-agent)",
  windows: "Task Scheduler",
  launchd: "launchd",
};

/** The schedule line of `status`: what runs it and when it runs next. */
function describeSchedule(
  config: { schedule: { cron: string; timezone: string } },
  next: Date | null,
  daemon: DaemonStatus | null,
  entries: SchedulerFormat[],
): string {
  const { cron, timezone } = config.schedule;
  const when = next
    ? formatLocal(next, timezone)
    : "unknown (the cron expression does not parse)";
  const by = [
    ...(daemon
      ? [
        `the daemon (process ${daemon.pid} on ${daemon.host}, since ${daemon.since} UTC)`,
      ]
      : []),
    ...entries.map((e) => SCHEDULER_NAMES[e]),
  ];
  if (by.length === 0) {
    return `Schedule: "${cron}" in ${timezone}, not registered: nothing runs it (register it with 'image-agent install', or run 'image-agent daemon'); it would next run ${when}`;
  }
  return `Schedule: "${cron}" in ${timezone}, run by ${
    by.join(" and ")
  }; next run ${when}`;
}

/** `status`; `root` is where `/` is, to find the scheduler entries. */
export function makeStatusCommand(root: string): Command {
  return {
    name: "status",
    summary: "counts of backups and cleanups, the last run, the next one",
    help: `Usage: image-agent status [OPTIONS]

Shows how many backups are pending, completed, failed, skipped and expired,
how many orders were cleaned up and how much space that freed, the last run,
and what runs the schedule (a running daemon, or the entry 'image-agent
install' wrote) with the next scheduled run.

${COMMON_HELP}

${EXIT_CODES_HELP}
`,
    run(deps, argv) {
      const { values } = parseCommandArgs("status", argv, {});
      const config = readConfig(deps, values.config, false);
      const ledger = Ledger.open(config.state.dir, () => deps.clock.now());
      try {
        const counts = ledger.counts();
        const last = ledger.lastRun();
        const daemon = runningDaemon(config.state.dir);
        const entries = installedEntries(root, config.file);
        // A running daemon says when it runs next; else the config does.
        const next = daemon?.nextRun
          ? new Date(daemon.nextRun)
          : nextRunTime(config, deps.clock.now());
        const status = {
          ...counts,
          lastRun: last ?? null,
          target: config.backup.target,
          schedule: {
            cron: config.schedule.cron,
            timezone: config.schedule.timezone,
            nextRun: next?.toISOString() ?? null,
            registered: [...(daemon ? ["daemon"] : []), ...entries],
            daemon,
          },
        };
        if (values.json) {
          printJson(deps, status);
          return Promise.resolve(0);
        }
        const b = counts.backups;
        const lines = [
          `Backups (${config.backup.target}): ${b.completed} completed, ${b.pending} pending, ${b.failed} failed, ${b.skipped} skipped, ${b.expired} expired`,
          `Cleaned orders: ${counts.cleanedOrders}, space freed: ${
            formatBytes(counts.freedBytes)
          }`,
          `Restores: ${counts.restored}`,
          last
            ? `Last run: #${last.id} ${last.command} (${last.trigger}) started ${last.startedAt} UTC, ${last.status}: ${
              describeCounts(last)
            }`
            : "Last run: none yet",
          describeSchedule(config, next, daemon, entries),
        ];
        deps.stdout(lines.join("\n") + "\n");
        return Promise.resolve(0);
      } finally {
        ledger.close();
      }
    },
  };
}

export const statusCommand = makeStatusCommand("/");

export const logCommand: Command = {
  name: "log",
  summary: "per-order history: backed up, cleaned, restored, skipped",
  help: `Usage: image-agent log [--order ORDER] [--limit N] [OPTIONS]

Lists what happened to orders, newest first: planned, backed up (with size,
SHA-256 and where the copy is), deleted, column cleared, restored, skipped
(with the reason), failed, expired.

Options:
      --order ORDER   only this order number
      --limit N       at most N entries (default 50)
${COMMON_HELP}

${EXIT_CODES_HELP}
`,
  run(deps, argv) {
    const { values } = parseCommandArgs("log", argv, {
      order: { type: "string" },
      limit: { type: "string" },
    });
    const limit = positiveInt("limit", values.limit, 50);
    const config = readConfig(deps, values.config, false);
    const ledger = Ledger.open(config.state.dir, () => deps.clock.now());
    try {
      const events = ledger.events({ orderNo: values.order, limit });
      if (values.json) {
        printJson(deps, { events });
        return Promise.resolve(0);
      }
      if (events.length === 0) {
        deps.stdout(
          values.order !== undefined
            ? `No history for order "${values.order}"\n`
            : "No history yet\n",
        );
        return Promise.resolve(0);
      }
      for (const e of events) {
        const extra = [
          e.size !== null ? formatBytes(e.size) : "",
          e.sha256 ? `sha256 ${e.sha256.slice(0, 16)}…` : "",
          e.remotePath ? `${e.target}:${e.remotePath}` : "",
          e.detail ?? "",
        ].filter((x) => x !== "").join("; ");
        deps.stdout(
          `${e.at}  ${e.orderNo.padEnd(12)} ${e.kind.padEnd(13)} ${extra}\n`,
        );
      }
      return Promise.resolve(0);
    } finally {
      ledger.close();
    }
  },
};

export const runsCommand: Command = {
  name: "runs",
  summary: "every run: start, end, trigger, counts, errors",
  help: `Usage: image-agent runs [--limit N] [OPTIONS]

Lists runs, newest first, with their trigger (manual, timer, daemon),
start and end (UTC), outcome, counts and errors.

Options:
      --limit N       at most N runs (default 20)
${COMMON_HELP}

${EXIT_CODES_HELP}
`,
  run(deps, argv) {
    const { values } = parseCommandArgs("runs", argv, {
      limit: { type: "string" },
    });
    const limit = positiveInt("limit", values.limit, 20);
    const config = readConfig(deps, values.config, false);
    const ledger = Ledger.open(config.state.dir, () => deps.clock.now());
    try {
      const runs = ledger.runs(limit);
      if (values.json) {
        printJson(deps, { runs });
        return Promise.resolve(0);
      }
      if (runs.length === 0) deps.stdout("No runs yet\n");
      for (const r of runs) {
        deps.stdout(
          `#${r.id} ${r.command} (${r.trigger}) ${r.startedAt} → ${
            r.finishedAt ?? "…"
          } UTC ${r.status}: ${describeCounts(r)}\n`,
        );
        for (const e of r.errors) deps.stdout(`    error: ${e}\n`);
      }
      return Promise.resolve(0);
    } finally {
      ledger.close();
    }
  },
};

/** The counts of a run, in the words of its command. */
function describeCounts(r: RunRow): string {
  if (r.command === "restore") {
    return `${
      r.eligible - r.failed
    } of ${r.eligible} order(s) restored, ${r.failed} failed`;
  }
  if (r.command === "prune") {
    return `${r.eligible - r.failed} expired cop${
      r.eligible - r.failed === 1 ? "y" : "ies"
    } removed, ${r.failed} failed`;
  }
  return `${r.eligible} eligible, ${r.backedUp} backed up, ${r.cleaned} cleaned, ${r.failed} failed, ${r.skipped} skipped, ${
    formatBytes(r.freedBytes)
  } freed`;
}
