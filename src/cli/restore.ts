/** `image-agent restore ORDER...`: bring HD images back by order number. */

import {
  type Command,
  COMMON_HELP,
  EXIT_CODES_HELP,
  parseCommandArgs,
  printJson,
} from "./command.ts";
import { openContext } from "./context.ts";
import { engineDeps, recordedRun } from "./run_support.ts";
import { restoreOrders } from "../engine/restore.ts";
import { UsageError } from "../errors.ts";

export const restoreCommand: Command = {
  name: "restore",
  summary: "bring the HD images of orders back: restore ORDER...",
  help: `Usage: image-agent restore [--dry-run] ORDER [ORDER...]

Downloads the backup of each order (by order number), checks its SHA-256
against the ledger, writes it back to its original path (temp file, fsync,
rename) and puts the image column back. A restored image is kept for
cleanup.afterDays days before it is cleaned again, without a new upload.

Options:
  -n, --dry-run       change nothing; say what would be restored
      --wait SECONDS  wait this long for a running job to finish (default 30)
${COMMON_HELP}

${EXIT_CODES_HELP}
`,
  async run(deps, argv) {
    const { values, positionals } = parseCommandArgs("restore", argv, {
      "dry-run": { type: "boolean", short: "n" },
      wait: { type: "string" },
    }, true);
    if (positionals.length === 0) {
      throw new UsageError("restore needs at least one order number", {
        hint: "image-agent restore ORDER [ORDER...]",
      });
    }
    const dryRun = values["dry-run"] ?? false;
    const waitMs = Math.max(0, Number(values.wait ?? 30) * 1000) || 0;
    const ctx = await openContext(deps, values.config);
    try {
      const ed = engineDeps(deps, ctx);
      const results = dryRun
        ? await restoreOrders(ed, positionals, { dryRun })
        : (await recordedRun(deps, ctx, "restore", false, async () => {
          const r = await restoreOrders(ed, positionals, { dryRun });
          const failed = r.filter((x) => x.status === "failed");
          return {
            value: r,
            summary: {
              eligible: r.length,
              backedUp: 0,
              cleaned: 0,
              failed: failed.length,
              skipped: 0,
              freedBytes: 0,
              dryRun,
            },
            status: failed.length === 0
              ? "ok"
              : failed.length === r.length
              ? "error"
              : "partial",
            errors: failed.map((f) => `order ${f.orderNo}: ${f.message}`),
          };
        }, waitMs)).value;
      const failed = results.filter((r) => r.status === "failed").length;
      if (values.json) {
        printJson(deps, {
          restored: results.filter((r) => r.status === "restored").length,
          failed,
          dryRun,
          orders: results,
        });
      } else {
        for (const r of results) {
          deps.stdout(
            `${r.orderNo}: ${r.status.replace("_", " ")}: ${r.message}\n`,
          );
        }
      }
      return failed > 0 ? 1 : 0;
    } finally {
      await ctx.close();
    }
  },
};
