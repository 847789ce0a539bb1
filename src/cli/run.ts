/**
 * `image-agent run`, `backup` and `cleanup`: the full pass, backup only,
 * cleanup only. `--dry-run` changes nothing and prints what would happen.
 */

import {
  type Command,
  COMMON_HELP,
  type Deps,
  EXIT_CODES_HELP,
  parseCommandArgs,
  printJson,
} from "./command.ts";
import { openContext } from "./context.ts";
import { engineDeps, recordedRun } from "./run_support.ts";
import { type PassMode, type PassResult, runPass } from "../engine/pass.ts";
import { formatBytes } from "../log.ts";
import { EXIT_FAILED, EXIT_OK } from "../errors.ts";

const WHAT: Record<PassMode, string> = {
  run: `Back up the HD image of every eligible order, verify the copy, then
delete the local file and clear the order's image column.`,
  backup: `Back up the HD image of every shipped order that has no verified
copy yet; delete nothing. Backing up early leaves more time for retries.`,
  cleanup: `Delete the local HD image of every eligible order whose backup is
recorded complete and verified, and clear its image column; upload nothing.`,
};

function helpFor(mode: PassMode): string {
  return `Usage: image-agent ${mode} [--dry-run] [OPTIONS]

${WHAT[mode]}

An order is eligible when its status is in orders.shippedStatuses, it
shipped more than cleanup.afterDays days ago and its image column is not
empty. Paths outside images.root are never touched.

Options:
  -n, --dry-run       change nothing; print what would happen
      --wait SECONDS  wait this long for another run to finish (default 0)
      --accept-new-ledger
                      the ledger in state.dir is not the one that made the
                      copies in the backup folder (it was lost or replaced):
                      after checking, take it as the ledger of record
${COMMON_HELP}

With --json the result is one object:
  {"eligible":N,"backedUp":N,"cleaned":N,"failed":N,"skipped":N,
   "freedBytes":N,"dryRun":B}

${EXIT_CODES_HELP}
`;
}

async function runMode(
  mode: PassMode,
  deps: Deps,
  argv: string[],
): Promise<number> {
  const { values } = parseCommandArgs(mode, argv, {
    "dry-run": { type: "boolean", short: "n" },
    wait: { type: "string" },
    "accept-new-ledger": { type: "boolean" },
  });
  const dryRun = values["dry-run"] ?? false;
  const acceptNewLedger = values["accept-new-ledger"] ?? false;
  const waitMs = Math.max(0, Number(values.wait ?? 0) * 1000) || 0;
  const ctx = await openContext(deps, values.config);
  try {
    const ed = engineDeps(deps, ctx);
    const where = ctx.storage ? ctx.storage.describe() : "no backup target";
    deps.log.info(
      `${
        dryRun ? "Dry run: " : ""
      }${mode} started (images: ${ctx.config.images.root}; backups: ${where})`,
    );
    const started = Date.now();
    let result: PassResult;
    if (dryRun) {
      result = await runPass(ed, { mode, dryRun, acceptNewLedger });
    } else {
      result = (await recordedRun(deps, ctx, mode, false, async () => {
        const r = await runPass(ed, { mode, dryRun, acceptNewLedger });
        const status = r.stopped === "interrupted"
          ? "interrupted"
          : r.stopped || r.summary.failed > 0
          ? (r.summary.backedUp + r.summary.cleaned > 0 ? "partial" : "error")
          : "ok";
        return { value: r, summary: r.summary, status, errors: r.errors };
      }, waitMs)).value;
    }
    const s = result.summary;
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    const verb = dryRun ? "would be" : "";
    deps.log.info(
      `${
        dryRun ? "Dry run finished" : `${mode} finished`
      } in ${secs} s: ${s.eligible} eligible, ${s.backedUp} ${verb} backed up, ${s.cleaned} ${verb} cleaned (${
        formatBytes(s.freedBytes)
      } ${
        dryRun ? "would be " : ""
      }freed), ${s.failed} failed, ${s.skipped} skipped`.replace(/ {2,}/g, " "),
    );
    if (result.stopped === "interrupted") {
      deps.log.warn(
        "Stopped early on request; the next run continues where this one stopped",
      );
    } else if (result.stopped) {
      deps.log.error(`Stopped early: ${result.stopped}`);
    }
    if (values.json) printJson(deps, s);
    else if (dryRun) {
      deps.stdout(
        `Dry run: ${s.eligible} eligible, ${s.backedUp} would be backed up, ${s.cleaned} would be cleaned (${
          formatBytes(s.freedBytes)
        }), ${s.skipped} would be skipped. Nothing was changed.\n`,
      );
    } else {
      deps.stdout(
        `${s.eligible} eligible, ${s.backedUp} backed up, ${s.cleaned} cleaned (${
          formatBytes(s.freedBytes)
        } freed), ${s.failed} failed, ${s.skipped} skipped\n`,
      );
    }
    return s.failed > 0 || result.stopped ? EXIT_FAILED : EXIT_OK;
  } finally {
    await ctx.close();
  }
}

function passCommand(mode: PassMode, summary: string): Command {
  return {
    name: mode,
    summary,
    help: helpFor(mode),
    run: (deps, argv) => runMode(mode, deps, argv),
  };
}

export const runCommand = passCommand(
  "run",
  "back up, verify, then delete eligible images (the nightly job)",
);
export const backupCommand = passCommand(
  "backup",
  "back up and verify images of shipped orders; delete nothing",
);
export const cleanupCommand = passCommand(
  "cleanup",
  "delete eligible images whose backup is complete and verified",
);
