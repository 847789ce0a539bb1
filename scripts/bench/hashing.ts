/**
 * Benchmark 4: hashing a 1 GiB file the way image-agent does
 * (scripts/bench/hash_entry.ts over src/fsutil.ts and the Baidu digest)
 * against `md5sum` and `sha256sum` on the same file, page cache warm for
 * all (the file is read once before, and the tools take turns).
 */

import { join } from "node:path";
import {
  Bytes,
  exists,
  fmtMiB,
  fmtRatio,
  fmtSeconds,
  fmtSize,
  type Mode,
  note,
  REPO,
  type Sample,
  sh,
  summarize,
  type Summary,
  timed,
} from "./lib.ts";

export interface HashRow {
  what: string;
  agentMode: string;
  peer: string;
  /** Hashing time inside the image-agent process (start excluded). */
  agentInside: Summary;
  /** The whole image-agent process, start included. */
  agentProcess: Summary;
  peerProcess: Summary;
  /** A reading, not a target (the digest against both tools together). */
  informational?: boolean;
}

export interface HashResult {
  mode: Mode;
  date: string;
  runs: number;
  size: number;
  rows: HashRow[];
}

async function file(dataDir: string, size: number): Promise<string> {
  const path = join(dataDir, `hash-${size}.bin`);
  const marker = `${path}.complete`;
  if (!(await exists(marker))) {
    note(`hashing: generating a ${fmtSize(size)} file`);
    await new Bytes(64 * 1024 * 1024).write(path, size, 1);
    await Deno.writeTextFile(marker, "");
  }
  return path;
}

function entry(mode: string, path: string, workers?: number): string[] {
  return [
    Deno.execPath(),
    "run",
    "--allow-read",
    "--quiet",
    join(REPO, "scripts/bench/hash_entry.ts"),
    mode,
    path,
    ...(workers === undefined ? [] : [String(workers)]),
  ];
}

export async function benchHashing(
  dataDir: string,
  size: number,
  runs: number,
  mode: Mode,
): Promise<HashResult> {
  const path = await file(dataDir, size);
  await sh(["sh", "-c", `cat '${path}' > /dev/null`]); // warm the page cache
  const plan: {
    what: string;
    agentMode: string;
    workers?: number;
    peer: string[];
    informational?: boolean;
  }[] = [
    {
      what: "MD5 block list (4 MiB blocks)",
      agentMode: "md5-blocks",
      peer: ["md5sum"],
    },
    { what: "SHA-256", agentMode: "sha256", peer: ["sha256sum"] },
    {
      what: "MD5 block list on one worker (the speed of one core)",
      agentMode: "md5-blocks",
      workers: 1,
      peer: ["md5sum"],
      informational: true,
    },
    {
      what:
        "Baidu upload hashes (block list, whole-file MD5 and slice MD5, SHA-256 beside them)",
      agentMode: "digest",
      peer: ["md5sum", "sha256sum"],
      informational: true,
    },
  ];
  const rows: HashRow[] = [];
  for (const p of plan) {
    const inside: number[] = [];
    const agentSamples: Sample[] = [];
    const peerSamples: Sample[] = [];
    for (let r = 0; r < runs; r++) {
      note(`hashing: ${p.agentMode} vs ${p.peer.join(" + ")}, run ${r + 1}`);
      const a = await timed(entry(p.agentMode, path, p.workers), {
        keepStdout: true,
      });
      inside.push(JSON.parse(a.stdout).seconds);
      agentSamples.push(a);
      let secs = 0;
      let rss = 0;
      for (const tool of p.peer) {
        const t = await timed([tool, path]);
        secs += t.seconds;
        rss = Math.max(rss, t.peakRss);
      }
      peerSamples.push({ seconds: secs, peakRss: rss, stdout: "" });
    }
    rows.push({
      what: p.what,
      agentMode: p.agentMode,
      peer: p.peer.join(" + "),
      agentInside: summarize(
        inside.map((s, i) => ({ ...agentSamples[i], seconds: s })),
      ),
      agentProcess: summarize(agentSamples),
      peerProcess: summarize(peerSamples),
      informational: p.informational,
    });
  }
  return { mode, date: new Date().toISOString(), runs, size, rows };
}

export function renderHashing(r: HashResult | undefined): string {
  const out = ["## 4. Hashing: image-agent against md5sum and sha256sum", ""];
  if (!r) {
    out.push("Not run yet: `deno task bench --only hash`.", "");
    return out.join("\n");
  }
  out.push(
    `Mode: **${r.mode}**, ${
      r.date.slice(0, 16).replace("T", " ")
    } UTC, median of ${r.runs} runs, one ${
      fmtSize(r.size)
    } file, page cache warm. image-agent's figure is the hashing inside the process (\`scripts/bench/hash_entry.ts\`, node:crypto over \`readChunks\`' 1 MiB reads, exactly as the agent hashes); the process with its start is in brackets. The tools' figures are whole processes. Ratio: image-agent's throughput ÷ the tool's.`,
    "",
    "| hash | image-agent | tool | tool's time | image-agent ÷ tool | target: within 10% | peak RSS (agent / tool) |",
    "|---|---:|---|---:|---:|---|---:|",
  );
  for (const row of r.rows) {
    const ratio = row.peerProcess.seconds / row.agentInside.seconds;
    const verdict = row.informational
      ? "(reading, no target)"
      : ratio >= 0.9
      ? ratio > 1.1 ? "met (faster)" : "met"
      : "**missed**";
    out.push(
      `| ${row.what} | ${fmtSeconds(row.agentInside.seconds)}, ${
        (r.size / 1e6 / row.agentInside.seconds).toFixed(0)
      } MB/s (${fmtSeconds(row.agentProcess.seconds)}) | \`${row.peer}\` | ${
        fmtSeconds(row.peerProcess.seconds)
      }, ${(r.size / 1e6 / row.peerProcess.seconds).toFixed(0)} MB/s | ${
        fmtRatio(ratio)
      } | ${verdict} | ${fmtMiB(row.agentProcess.peakRss)} / ${
        fmtMiB(row.peerProcess.peakRss)
      } |`,
    );
  }
  out.push("");
  return out.join("\n");
}
