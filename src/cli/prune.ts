/** `image-agent prune`: retention of remote copies. */

import {
  type Command,
  COMMON_HELP,
  EXIT_CODES_HELP,
  parseCommandArgs,
  printJson,
} from "./command.ts";
import { openContext } from "./context.ts";
import { engineDeps, recordedRun } from "./run_support.ts";
import { pruneExpired } from "../engine/retention.ts";

export const pruneCommand: Command = {
  name: "prune",
  summary: "delete backup copies older than backup.retentionDays",
  help: `Usage: image-agent prune [--dry-run] [OPTIONS]

Deletes the backup copies of cleaned-up orders that are older than
backup.retentionDays (default 365) and marks them expired. Such an order
can no longer be restored. Copies of images that are back on disk are kept.

Options:
  -n, --dry-run       change nothing; list what would be removed
${COMMON_HELP}

${EXIT_CODES_HELP}
`,
  async run(deps, argv) {
    const { values } = parseCommandArgs("prune", argv, {
      "dry-run": { type: "boolean", short: "n" },
    });
    const dryRun = values["dry-run"] ?? false;
    const ctx = await openContext(deps, values.config);
    try {
      const ed = engineDeps(deps, ctx);
      const result = dryRun
        ? await pruneExpired(ed, { dryRun })
        : (await recordedRun(deps, ctx, "prune", false, async () => {
          const r = await pruneExpired(ed, { dryRun });
          return {
            value: r,
            summary: {
              eligible: r.expired + r.failed,
              backedUp: 0,
              cleaned: 0,
              failed: r.failed,
              skipped: 0,
              freedBytes: 0,
              dryRun,
            },
            status: r.failed > 0 ? "error" : "ok",
            errors: r.errors,
          };
        })).value;
      if (values.json) printJson(deps, result);
      else {
        deps.stdout(
          `${
            dryRun ? "would remove" : "removed"
          } ${result.expired} expired cop${result.expired === 1 ? "y" : "ies"}${
            result.failed ? `, ${result.failed} failed` : ""
          }\n`,
        );
      }
      return result.failed > 0 ? 1 : 0;
    } finally {
      await ctx.close();
    }
  },
};
