/**
 * Benchmark 1: a `run` with nothing to do, on shops of growing size.
 *
 * For each size a SQLite shop is generated (none of its orders eligible),
 * migrated, and given one warm-up run; then `image-agent --help` (process
 * start and module loading), `image-agent status --json` and `image-agent
 * run --json --quiet` are timed in turn. The figure that matters is the run
 * minus `--help`: what the eligibility query and the ledger bookkeeping cost
 * beyond starting the program.
 */

import { join } from "node:path";
import {
  agent,
  exists,
  fmtCount,
  fmtMiB,
  fmtRatio,
  fmtSeconds,
  type Mode,
  note,
  removeTree,
  type Sample,
  summarize,
  type Summary,
  timed,
} from "./lib.ts";
import { buildIdleShop, eligiblePlan, writeConfig } from "./shop.ts";

export interface IdleRow {
  orders: number;
  buildSeconds: number;
  migrateSeconds: number;
  help: Summary;
  status: Summary;
  run: Summary;
  plan: string;
}

export interface IdleResult {
  mode: Mode;
  date: string;
  runs: number;
  rows: IdleRow[];
}

export async function benchNothingToDo(
  dataDir: string,
  sizes: number[],
  runs: number,
  mode: Mode,
): Promise<IdleResult> {
  const rows: IdleRow[] = [];
  for (const orders of sizes) {
    const dir = join(dataDir, "idle", String(orders));
    const db = join(dir, "shop.db");
    let buildSeconds = 0;
    // The shop is kept between invocations: a nothing-to-do run changes
    // nothing in it. The ledger is started afresh each time.
    if (!(await exists(join(dir, ".built")))) {
      await removeTree(dir);
      await Deno.mkdir(dir, { recursive: true });
      note(`nothing-to-do: generating a shop of ${fmtCount(orders)} orders`);
      const t = performance.now();
      buildIdleShop(db, orders);
      buildSeconds = (performance.now() - t) / 1000;
      await Deno.writeTextFile(join(dir, ".built"), `${buildSeconds}\n`);
    } else {
      buildSeconds = Number(await Deno.readTextFile(join(dir, ".built")));
    }
    // A fresh ledger with a fresh (empty) backup folder: image-agent refuses
    // a backup folder holding copies its ledger does not know.
    await removeTree(join(dir, "state"));
    await removeTree(join(dir, "backup"));
    await Deno.mkdir(join(dir, "images"), { recursive: true });
    await Deno.mkdir(join(dir, "backup"), { recursive: true });
    const config = await writeConfig({
      dir,
      db,
      imagesRoot: join(dir, "images"),
      backupDir: join(dir, "backup"),
      stateDir: join(dir, "state"),
    });
    const migrate = await timed(agent("migrate", "-c", config, "--quiet"));
    await timed(agent("run", "-c", config, "--json", "--quiet")); // warm-up
    const help: Sample[] = [];
    const status: Sample[] = [];
    const run: Sample[] = [];
    note(`nothing-to-do: ${fmtCount(orders)} orders, ${runs} runs`);
    for (let i = 0; i < runs; i++) {
      help.push(await timed(agent("--help")));
      status.push(await timed(agent("status", "-c", config, "--json")));
      const r = await timed(
        agent("run", "-c", config, "--json", "--quiet"),
        { keepStdout: true },
      );
      const summary = JSON.parse(r.stdout);
      if (summary.eligible !== 0) {
        throw new Error(
          `the idle shop has ${summary.eligible} eligible orders`,
        );
      }
      run.push(r);
    }
    rows.push({
      orders,
      buildSeconds,
      migrateSeconds: migrate.seconds,
      help: summarize(help),
      status: summarize(status),
      run: summarize(run),
      plan: eligiblePlan(db),
    });
  }
  return { mode, date: new Date().toISOString(), runs, rows };
}

export function renderNothingToDo(
  r: IdleResult | undefined,
  extra: string | undefined,
  loadNote = "",
): string {
  const out: string[] = [
    "## 1. A run with nothing to do",
    "",
  ];
  if (!r) {
    out.push("Not run yet: `deno task bench --only idle`.", "");
  } else {
    out.push(
      `Mode: **${r.mode}**, ${
        r.date.slice(0, 16).replace("T", " ")
      } UTC, median of ${r.runs} runs each. SQLite shop; 90% of the orders shipped long ago with the image already cleared, 5% shipped in the last three days, 5% paid and not shipped: none eligible. Times are wall clock around the whole process (\`deno run main.ts\`).`,
      "",
      "| orders | `--help` (process start) | `status --json` | `run --json` | run − start | target | peak RSS of run | `migrate` (once) |",
      "|---:|---:|---:|---:|---:|---|---:|---:|",
    );
    for (const row of r.rows) {
      const beyond = row.run.seconds - row.help.seconds;
      out.push(
        `| ${fmtCount(row.orders)} | ${fmtSeconds(row.help.seconds)} | ${
          fmtSeconds(row.status.seconds)
        } | ${fmtSeconds(row.run.seconds)} | ${fmtSeconds(beyond)} | ${
          beyond < 1 ? "< 1 s: met" : "**missed** (≥ 1 s)"
        } | ${fmtMiB(row.run.peakRss)} | ${fmtSeconds(row.migrateSeconds)} |`,
      );
    }
    const first = r.rows[0];
    const last = r.rows[r.rows.length - 1];
    if (first && last && first !== last) {
      const growth = (last.run.seconds - last.help.seconds) /
        Math.max(first.run.seconds - first.help.seconds, 0.001);
      out.push(
        "",
        `From ${fmtCount(first.orders)} to ${fmtCount(last.orders)} orders (${
          fmtRatio(last.orders / first.orders)
        } the rows) the time beyond process start changes by ${
          fmtRatio(growth)
        }.`,
      );
    }
    out.push(
      "",
      `SQLite's plan for the eligibility query: \`${
        r.rows[r.rows.length - 1]?.plan ?? ""
      }\`.`,
      "",
      "**What limits it.** Process start dominates: `deno run` loading and compiling the program's modules (the `--help` column). Beyond that a run opens the shop and checks its columns, opens the ledger (WAL, `synchronous=FULL`) and commits two small transactions (the run's start and end, each an fsync), takes and releases the run lock, and asks the partial index `image_agent_eligible` for shipped orders older than the cutoff that still have an image: a range search on `shipped_at` in an index that holds only the orders with an image, so its cost follows the number of orders still holding an image, not the size of the table.",
      "",
      loadNote,
      "",
    );
  }
  out.push("### Other shop databases", "");
  out.push(
    extra ??
      'Not measured in this file yet: start the test servers with `eval "$(bash scripts/test-db-servers.sh start)"` and run `deno task bench --only db`.',
    "",
  );
  return out.join("\n");
}
