/**
 * `deno task bench`: image-agent measured side by side with the tools an
 * operator would use instead, on data generated here, and BENCHMARKS.md
 * written from the results.
 *
 *   deno task bench                 quick mode (a few minutes)
 *   deno task bench --full          the sizes of the issue (tens of minutes)
 *   deno task bench --only offload  one benchmark; the others keep their last
 *                                   results (scripts/bench/results.json, kept
 *                                   in the repository with BENCHMARKS.md)
 *
 * Benchmarks: idle (a run with nothing to do, SQLite; plus
 * scripts/bench/db_nothing_to_do.ts on PostgreSQL and MariaDB when their
 * servers can be started), offload (image-agent vs rclone and rsync into a
 * folder on /dev/shm), baidu (upload and restore vs curl against the fake
 * Baidu), hash (vs md5sum and sha256sum).
 *
 * Benchmarks are not tests: nothing here asserts a time. The Debian packages
 * the peers come from are listed in scripts/bench/apt-packages.txt.
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  exists,
  KIB,
  MIB,
  type Mode,
  note,
  removeTree,
  REPO,
  sh,
} from "./lib.ts";
import { benchNothingToDo } from "./nothing_to_do.ts";
import { benchOffload, type FileSet } from "./offload.ts";
import { benchBaidu } from "./baidu.ts";
import { benchHashing } from "./hashing.ts";
import { render, type Stored } from "./report.ts";

const HELP = `Usage: deno task bench [--quick | --full] [OPTIONS]

Runs image-agent side by side with rclone, rsync, curl, md5sum and sha256sum
on generated data (under ./bench-data and /dev/shm) and writes BENCHMARKS.md.

Options:
  --quick                 small sizes, a few minutes (default)
  --full                  the issue's sizes (20,000 × 256 KiB, 200 × 50 MiB,
                          10 × 200 MiB and 1 GiB uploads, 1M-order shops)
  --only LIST             comma-separated: idle,db,offload,baidu,hash
  --runs N                runs per measurement (median; default 3)
  --idle-sizes LIST       order counts for the nothing-to-do run
  --small N[xKIB]         small-image set, e.g. 2000x256
  --large N[xMIB]         large-image set, e.g. 20x50
  --baidu N[xMIB]         Baidu set, e.g. 2x100
  --baidu-big MIB         one more Baidu set of one file of MIB (0: none)
  --hash-mib MIB          size of the hashed file (default 1024)
  --concurrency N         image-agent backup.concurrency (default 4)
  --batch-size N          image-agent cleanup.batchSize (default 500)
  --target DIR            backup target on another file system
                          (default /dev/shm/image-agent-bench)
  --no-write              print the report; keep BENCHMARKS.md and the stored
                          results as they are
  --render                run nothing; write BENCHMARKS.md from the stored
                          results (scripts/bench/results.json)
  -h, --help              this help
`;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean" },
    full: { type: "boolean" },
    only: { type: "string" },
    runs: { type: "string" },
    "idle-sizes": { type: "string" },
    small: { type: "string" },
    large: { type: "string" },
    baidu: { type: "string" },
    "baidu-big": { type: "string" },
    "hash-mib": { type: "string" },
    concurrency: { type: "string", default: "4" },
    "batch-size": { type: "string", default: "500" },
    target: { type: "string", default: "/dev/shm/image-agent-bench" },
    "no-write": { type: "boolean" },
    render: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log(HELP);
  Deno.exit(0);
}
const mode: Mode = values.full ? "full" : "quick";
const full = mode === "full";
const ALL = ["idle", "db", "offload", "baidu", "hash"];
const only = values.render ? [] : values.only ? values.only.split(",") : ALL;
for (const o of only) {
  if (!ALL.includes(o)) {
    console.error(`Unknown benchmark "${o}" (known: ${ALL.join(", ")})`);
    Deno.exit(2);
  }
}
const runs = Number(values.runs ?? 3);
const idleSizes = (values["idle-sizes"] ??
  (full ? "10000,100000,1000000" : "10000,100000,1000000")).split(",").map(
    Number,
  );

function pair(text: string | undefined, fallback: [number, number]) {
  if (!text) return fallback;
  const [n, s] = text.split("x").map(Number);
  return [n, s ?? fallback[1]] as [number, number];
}
const [smallN, smallKiB] = pair(
  values.small,
  full ? [20000, 256] : [2000, 256],
);
const [largeN, largeMiB] = pair(values.large, full ? [200, 50] : [20, 50]);
const [baiduN, baiduMiB] = pair(values.baidu, full ? [10, 200] : [2, 100]);
const baiduBig = Number(values["baidu-big"] ?? 1024);
const hashMiB = Number(values["hash-mib"] ?? 1024);
const knobs = {
  concurrency: Number(values.concurrency),
  batchSize: Number(values["batch-size"]),
};

const DATA = join(REPO, "bench-data");
/** Kept in the repository, so one benchmark run alone keeps the others' figures. */
const RESULTS = join(REPO, "scripts/bench/results.json");
const APT_LIST = join(REPO, "scripts/bench/apt-packages.txt");

// ------------------------------------------------------------ tools

const NEEDS: Record<string, string[]> = {
  idle: ["/usr/bin/time"],
  db: [],
  offload: ["/usr/bin/time", "rclone", "rsync", "cp"],
  baidu: ["/usr/bin/time", "curl", "cp"],
  hash: ["/usr/bin/time", "md5sum", "sha256sum"],
};

async function have(tool: string): Promise<boolean> {
  if (tool.startsWith("/")) return await exists(tool);
  const r = await new Deno.Command("sh", {
    args: ["-c", `command -v ${tool}`],
    stdout: "null",
    stderr: "null",
  }).output();
  return r.success;
}

const missing: string[] = [];
for (const b of only) {
  for (const t of NEEDS[b]) {
    if (!missing.includes(t) && !(await have(t))) missing.push(t);
  }
}
if (missing.length > 0) {
  const pkgs = (await Deno.readTextFile(APT_LIST)).split("\n")
    .map((l) => l.replace(/#.*/, "").trim()).filter(Boolean);
  console.error(
    `Missing: ${
      missing.join(", ")
    }. The benchmarks compare image-agent with tools from these Debian packages:\n\n` +
      `  sudo apt-get update && sudo apt-get install -y ${pkgs.join(" ")}\n\n` +
      `(the list is in scripts/bench/apt-packages.txt)`,
  );
  Deno.exit(2);
}

// ------------------------------------------------------------ machine

async function text(cmd: string[]): Promise<string> {
  try {
    return (await sh(cmd)).trim();
  } catch {
    return "?";
  }
}

async function machine(): Promise<string> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? "?";
  const rot = await Deno.readTextFile("/sys/block/vda/queue/rotational")
    .catch(() => "");
  const lines = [
    `- Date: ${await text(["date", "-u"])}`,
    `- CPU: ${model}, \`nproc\` = ${await text(["nproc"])}`,
    `- Kernel: ${await text(["uname", "-sr"])}`,
    `- Deno: ${Deno.version.deno} (V8 ${Deno.version.v8})`,
    `- image-agent: commit ${await text([
      "git",
      "-C",
      REPO,
      "rev-parse",
      "--short",
      "HEAD",
    ])}${
      (await text(["git", "-C", REPO, "status", "--porcelain", "src"]))
          .length > 0
        ? " (with uncommitted changes under src/)"
        : ""
    }`,
    `- Tools: ${(await text(["rclone", "version"])).split("\n")[0]}; ${
      (await text(["rsync", "--version"])).split("\n")[0]
    }; ${(await text(["curl", "--version"])).split("\n")[0]}; ${
      (await text(["md5sum", "--version"])).split("\n")[0]
    }`,
    "- Memory (`free -h`):",
    "",
    "```",
    await text(["free", "-h"]),
    "```",
    "",
    `- Disks (\`df -hT\` of the data and the target${
      rot ? `; /dev/vda rotational flag: ${rot.trim()}` : ""
    }):`,
    "",
    "```",
    await text(["df", "-hT", DATA, "/dev/shm"]),
    "```",
  ];
  return lines.join("\n");
}

// ------------------------------------------------------------ results

async function loadStored(): Promise<Stored> {
  try {
    return JSON.parse(await Deno.readTextFile(RESULTS));
  } catch {
    return {};
  }
}

async function loadavg(): Promise<string> {
  return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3)
    .join(" ");
}

// ------------------------------------------------------------ db servers

/** Runs scripts/bench/db_nothing_to_do.ts; servers started when possible. */
async function dbNothingToDo(): Promise<string | undefined> {
  const script = join(REPO, "scripts/bench/db_nothing_to_do.ts");
  if (!(await exists(script))) return undefined;
  const env: Record<string, string> = {};
  let started: string | undefined;
  const servers = join(REPO, "scripts/test-db-servers.sh");
  if (
    !Deno.env.get("IMAGE_AGENT_TEST_PG_URL") &&
    !Deno.env.get("IMAGE_AGENT_TEST_MYSQL_URL") &&
    (await have("pg_ctl") || await exists("/usr/lib/postgresql")) &&
    await have("mariadbd")
  ) {
    note("db: starting throwaway PostgreSQL and MariaDB servers");
    try {
      const out = await sh(["bash", servers, "start"], {
        env: { PG_PORT: "55632", MYSQL_PORT: "53606" },
      });
      for (const m of out.matchAll(/export (\w+)=(.*)/g)) {
        env[m[1]] = m[2].replace(/^['"]|['"]$/g, "");
      }
      started = env.IMAGE_AGENT_TEST_DB_DIR;
    } catch (err) {
      note(
        `db: the servers did not start (${
          (err as Error).message
        }); SQLite only`,
      );
    }
  }
  try {
    const sizes = full ? idleSizes : idleSizes.filter((n) => n <= 100000);
    note(`db: scripts/bench/db_nothing_to_do.ts --sizes ${sizes.join(",")}`);
    const out = await sh([
      Deno.execPath(),
      "run",
      "--allow-all",
      "--quiet",
      script,
      "--sizes",
      sizes.join(","),
      "--runs",
      String(runs),
    ], { env });
    const r = JSON.parse(out.slice(out.indexOf("{")));
    const lines = [
      `Mode: **${mode}**, ${
        String(r.date).slice(0, 16).replace("T", " ")
      } UTC, from \`scripts/bench/db_nothing_to_do.ts\` (median of ${r.runs} runs; 99% of the orders shipped long ago with the image emptied, the newest 1% recent or not shipped). \`eligible()\` is the shop's query alone, in process; \`run\` is the whole \`image-agent run --json\` process.`,
      "",
      "| shop | orders | build | first `migrate` | second `migrate` | `eligible()` query | `run` process |",
      "|---|---:|---:|---:|---:|---:|---:|",
    ];
    for (const row of r.rows) {
      lines.push(
        `| ${row.driver} | ${row.orders.toLocaleString("en-US")} | ${
          row.buildSeconds.toFixed(1)
        } s | ${row.migrateSeconds.toFixed(2)} s | ${
          row.migrateAgainSeconds.toFixed(2)
        } s | ${row.eligibleMs.toFixed(1)} ms | ${
          row.runSeconds === null
            ? `failed (exit ${row.runExit})`
            : `${row.runSeconds.toFixed(2)} s`
        } |`,
      );
    }
    if (r.work?.length) {
      lines.push(
        "",
        `A run that has work: ${
          r.work[0].orders.toLocaleString("en-US")
        } orders, all shipped long ago, each with a 4 KiB image, backed up to a local folder and cleaned by one \`image-agent run --json\` (median of ${r.runs}, a fresh shop each time). The images are small so that the figure is mostly what the shop database and the ledger cost per order.`,
        "",
        "| shop | orders | `run` process | orders/s | cleaned |",
        "|---|---:|---:|---:|---:|",
      );
      for (const w of r.work) {
        lines.push(
          `| ${w.driver} | ${w.orders.toLocaleString("en-US")} | ${
            w.runSeconds === null ? "failed" : `${w.runSeconds.toFixed(2)} s`
          } | ${
            w.runSeconds
              ? Math.round(w.orders / w.runSeconds).toLocaleString("en-US")
              : "–"
          } | ${w.cleaned.toLocaleString("en-US")} |`,
        );
      }
    }
    if (
      !env.IMAGE_AGENT_TEST_PG_URL && !Deno.env.get("IMAGE_AGENT_TEST_PG_URL")
    ) {
      lines.push(
        "",
        'TODO(PostgreSQL/MySQL): no database servers were available for this run; start them with `eval "$(bash scripts/test-db-servers.sh start)"` and run `deno task bench --only db`.',
      );
    }
    return lines.join("\n");
  } finally {
    if (started) {
      await sh(["bash", servers, "stop"], { env }).catch(() => "");
    }
  }
}

// ------------------------------------------------------------ run

await Deno.mkdir(DATA, { recursive: true });
if (only.length > 0) await Deno.mkdir(values.target!, { recursive: true });
const stored = await loadStored();
if (only.length > 0) stored.machine = await machine();

for (const b of only) {
  const before = await loadavg();
  const load = () => loadavg().then((after) => `${before} → ${after}`);
  if (b === "idle") {
    stored.idle = {
      ...(await benchNothingToDo(DATA, idleSizes, Math.max(runs, 5), mode)),
      load: await load(),
    };
  } else if (b === "db") {
    const md = await dbNothingToDo();
    if (md) stored.db = { mode, date: new Date().toISOString(), markdown: md };
  } else if (b === "offload") {
    const sets: FileSet[] = [
      { name: `small-${smallN}`, files: smallN, size: smallKiB * KIB },
      { name: `large-${largeN}`, files: largeN, size: largeMiB * MIB },
    ];
    stored.offload = {
      ...(await benchOffload(DATA, values.target!, sets, runs, mode, knobs)),
      load: await load(),
    };
  } else if (b === "baidu") {
    const sets = [{ files: baiduN, size: baiduMiB * MIB }];
    if (baiduBig > 0) sets.push({ files: 1, size: baiduBig * MIB });
    stored.baidu = {
      ...(await benchBaidu(
        DATA,
        values.target!,
        sets,
        [100, baiduBig > 0 ? baiduBig : 1024],
        full ? runs : 1,
        mode,
      )),
      load: await load(),
    };
  } else if (b === "hash") {
    stored.hash = {
      ...(await benchHashing(DATA, hashMiB * MIB, runs, mode)),
      load: await load(),
    };
  }
  if (!values["no-write"]) {
    await Deno.writeTextFile(RESULTS, JSON.stringify(stored, null, 2) + "\n");
    await sh([Deno.execPath(), "fmt", "--quiet", RESULTS]);
  }
}
// Only a run that used the target empties it (never --render: a
// benchmark running beside it may be writing there).
if (only.length > 0) await removeTree(values.target!);

const report = render(stored);
if (values["no-write"]) {
  console.log(report);
} else {
  await Deno.writeTextFile(join(REPO, "BENCHMARKS.md"), report);
  // The repository's `deno fmt --check` covers Markdown too.
  await sh([Deno.execPath(), "fmt", "--quiet", join(REPO, "BENCHMARKS.md")]);
  note("wrote BENCHMARKS.md");
}
