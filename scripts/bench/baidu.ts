/**
 * Benchmark 3: Baidu Netdisk upload and restore on loopback, image-agent
 * against curl, both talking to the fake of the tests
 * (tests/fakes/baidu_server.ts) running in this process.
 *
 * image-agent: the real command line. A generated shop whose orders all
 * shipped long ago, a config with `backup.target = "baidu"` pointing at the
 * fake and a saved login; `image-agent run` (digest, precreate, upload the
 * parts, create, verify the block list and metadata, delete, clear) and then
 * `image-agent restore` of every order (dlink, download, SHA-256 check,
 * rename, column back).
 *
 * curl: the same files cut beforehand into the same 4 MiB chunks, their MD5s
 * computed beforehand (neither is timed: curl gets that work for free);
 * timed: `create` of the order's folder, `precreate`, one curl process sending every chunk to `superfile2`
 * with `-F file=@chunk` (`--parallel --parallel-max` as many as
 * image-agent's part workers), and `create`; then `filemetas` and one curl
 * process downloading every dlink with `User-Agent: pan.baidu.com`.
 *
 * Also runs scripts/bench/baidu_upload.ts (BaiduStorage.put alone in a child
 * process, the fake keeping only MD5s) at 100 MiB and 1 GiB, for the memory
 * of the upload path without the rest of the program.
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import {
  credentialsPath,
  writeCredentials,
} from "../../src/storage/baidu/credentials.ts";
import { FakeBaidu } from "../../tests/fakes/baidu_server.ts";
import {
  agent,
  Bytes,
  fmtMiB,
  fmtRatio,
  fmtSeconds,
  fmtSize,
  MIB,
  type Mode,
  note,
  removeTree,
  REPO,
  type Sample,
  sh,
  summarize,
  type Summary,
  timed,
} from "./lib.ts";
import { buildOffloadShop, offloadImage } from "./shop.ts";

const FOLDER = "/apps/image-agent/hd";
const CURL_FOLDER = "/apps/image-agent/curl";
const CHUNK = 4 * MIB;
/** image-agent's default `backup.baidu.concurrency`. */
const PART_WORKERS = 3;

export interface BaiduSet {
  files: number;
  size: number;
}

export interface BaiduSetResult {
  set: BaiduSet;
  upload: { agent: Summary; curl: Summary };
  restore: { agent: Summary; curl: Summary };
}

export interface PutOnly {
  sizeMiB: number;
  seconds: number;
  mibPerSecond: number;
  peakRssMiB: number | null;
}

export interface BaiduResult {
  mode: Mode;
  date: string;
  runs: number;
  sets: BaiduSetResult[];
  putOnly: PutOnly[];
}

interface Curlable {
  /** The file API host. */
  api: string;
  /** The PCS host parts go to (curl skips locateupload). */
  upload: string;
  token: string;
}

function call(
  base: string,
  c: Curlable,
  path: string,
  query: Record<string, string>,
) {
  const q = new URLSearchParams({ ...query, access_token: c.token });
  return `${base}${path}?${q}`;
}

function api(c: Curlable, path: string, query: Record<string, string>) {
  return call(c.api, c, path, query);
}

/** Chunks of `path` written beside it, with their MD5s (not timed). */
async function cut(
  path: string,
  dir: string,
): Promise<{ chunks: string[]; md5s: string[] }> {
  await Deno.mkdir(dir, { recursive: true });
  const data = await Deno.readFile(path);
  const chunks: string[] = [];
  const md5s: string[] = [];
  for (let off = 0, i = 0; off < data.length; off += CHUNK, i++) {
    const piece = data.subarray(off, Math.min(off + CHUNK, data.length));
    const p = join(dir, `part-${String(i).padStart(4, "0")}`);
    await Deno.writeFile(p, piece);
    chunks.push(p);
    md5s.push(createHash("md5").update(piece).digest("hex"));
  }
  return { chunks, md5s };
}

/**
 * The order's folder (create isdir=1, which Baidu needs before a file goes
 * in), precreate, superfile2 for every chunk, create: four curl processes.
 */
async function curlUpload(
  c: Curlable,
  remote: string,
  size: number,
  chunks: string[],
  md5s: string[],
): Promise<Sample> {
  const blockList = JSON.stringify(md5s);
  const form = (extra: Record<string, string>) =>
    new URLSearchParams({
      path: remote,
      size: String(size),
      isdir: "0",
      block_list: blockList,
      rtype: "3",
      ...extra,
    }).toString();
  const t0 = await timed(
    [
      "curl",
      "-sS",
      "--fail-with-body",
      "-o",
      "/dev/null",
      "--data-binary",
      new URLSearchParams({
        path: remote.slice(0, remote.lastIndexOf("/")),
        isdir: "1",
        rtype: "0",
      }).toString(),
      api(c, "/rest/2.0/xpan/file", { method: "create" }),
    ],
  );
  const t1 = await timed(
    [
      "curl",
      "-sS",
      "--fail-with-body",
      "--data-binary",
      form({ autoinit: "1" }),
      api(c, "/rest/2.0/xpan/file", { method: "precreate" }),
    ],
    { keepStdout: true },
  );
  const pre = JSON.parse(t1.stdout);
  if (pre.errno !== 0 || !pre.uploadid) {
    throw new Error(`precreate: ${t1.stdout}`);
  }
  const args = [
    "curl",
    "-sS",
    "--fail-with-body",
    "--parallel",
    "--parallel-max",
    String(PART_WORKERS),
  ];
  chunks.forEach((chunk, i) => {
    if (i > 0) args.push("--next");
    args.push(
      "-o",
      "/dev/null",
      "-F",
      `file=@${chunk};type=application/octet-stream`,
      call(c.upload, c, "/rest/2.0/pcs/superfile2", {
        method: "upload",
        type: "tmpfile",
        path: remote,
        uploadid: pre.uploadid,
        partseq: String(i),
      }),
    );
  });
  const t2 = await timed(args);
  const t3 = await timed(
    [
      "curl",
      "-sS",
      "--fail-with-body",
      "--data-binary",
      form({ uploadid: pre.uploadid }),
      api(c, "/rest/2.0/xpan/file", { method: "create" }),
    ],
    { keepStdout: true },
  );
  const created = JSON.parse(t3.stdout);
  if (created.errno !== 0 || created.size !== size) {
    throw new Error(`create: ${t3.stdout}`);
  }
  return {
    seconds: t0.seconds + t1.seconds + t2.seconds + t3.seconds,
    peakRss: Math.max(t0.peakRss, t1.peakRss, t2.peakRss, t3.peakRss),
    stdout: "",
  };
}

/** filemetas for the dlinks, then one curl downloading every file. */
async function curlDownload(
  fake: FakeBaidu,
  c: Curlable,
  remotes: string[],
  outDir: string,
): Promise<Sample> {
  await Deno.mkdir(outDir, { recursive: true });
  const ids = remotes.map((r) => String(fake.files.get(r)!.fsId));
  const metaArgs = [
    api(c, "/rest/2.0/xpan/multimedia", {
      method: "filemetas",
      fsids: `[${ids.join(",")}]`,
      dlink: "1",
    }),
  ];
  const t1 = await timed(["curl", "-sS", "--fail-with-body", ...metaArgs], {
    keepStdout: true,
  });
  const list = JSON.parse(t1.stdout).list as { dlink: string }[];
  const args = ["curl", "-sS", "--fail", "-L", "-A", "pan.baidu.com"];
  list.forEach((e, i) => {
    if (i > 0) args.push("--next", "-L", "-A", "pan.baidu.com");
    args.push(
      "-o",
      join(outDir, `file-${i}`),
      `${e.dlink}&access_token=${c.token}`,
    );
  });
  const t2 = await timed(args);
  return {
    seconds: t1.seconds + t2.seconds,
    peakRss: Math.max(t1.peakRss, t2.peakRss),
    stdout: "",
  };
}

async function putOnly(sizeMiB: number): Promise<PutOnly> {
  const out = await sh([
    Deno.execPath(),
    "run",
    "--allow-all",
    "--quiet",
    join(REPO, "scripts/bench/baidu_upload.ts"),
    "--size-mib",
    String(sizeMiB),
  ]);
  const line = out.trim().split("\n").pop()!;
  const r = JSON.parse(line);
  return {
    sizeMiB: r.sizeMiB,
    seconds: r.seconds,
    mibPerSecond: r.mibPerSecond,
    peakRssMiB: r.peakRssMiB,
  };
}

async function oneSet(
  dataDir: string,
  shm: string,
  set: BaiduSet,
  runs: number,
): Promise<BaiduSetResult> {
  const base = join(dataDir, "baidu", `${set.files}x${set.size / MIB}MiB`);
  const master = join(base, "master");
  await removeTree(base);
  await Deno.mkdir(master, { recursive: true });
  note(`baidu: generating ${set.files} files of ${fmtSize(set.size)}`);
  const bytes = new Bytes();
  for (let i = 1; i <= set.files; i++) {
    const p = join(master, offloadImage(i));
    await Deno.mkdir(join(p, ".."), { recursive: true });
    await bytes.write(p, set.size, i);
  }
  // The chunks curl sends, cut once (tmpfs), with their MD5s.
  const cuts: { chunks: string[]; md5s: string[] }[] = [];
  for (let i = 1; i <= set.files; i++) {
    cuts.push(await cut(join(master, offloadImage(i)), join(shm, `cut-${i}`)));
  }

  const samples = {
    agentUp: [] as Sample[],
    agentDown: [] as Sample[],
    curlUp: [] as Sample[],
    curlDown: [] as Sample[],
  };
  for (let r = 0; r < runs; r++) {
    const fake = await FakeBaidu.start({});
    try {
      const pair = fake.issueTokens();
      fake.mkdir(CURL_FOLDER); // image-agent makes its backup folder once too
      const c: Curlable = {
        api: fake.endpoints.api,
        upload: fake.endpoints.upload,
        token: pair.access_token,
      };
      // image-agent
      const work = join(base, "work");
      await removeTree(work);
      await Deno.mkdir(work, { recursive: true });
      const images = join(work, "hd_images");
      await sh(["cp", "-al", master, images]);
      const db = join(work, "shop.db");
      buildOffloadShop(db, set.files);
      const state = join(work, "state");
      await writeCredentials(credentialsPath(state), {
        accessToken: pair.access_token,
        refreshToken: pair.refresh_token,
        expiresAt: new Date(Date.now() + 30 * 86400_000).toISOString(),
        scope: "basic netdisk",
        appKey: fake.appKey,
        savedAt: new Date().toISOString(),
      });
      const config = join(work, "image-agent.json");
      await Deno.writeTextFile(
        config,
        JSON.stringify({
          database: { driver: "sqlite", path: db },
          orders: { shippedStatuses: ["shipped"] },
          images: { root: images },
          cleanup: { afterDays: 10 },
          backup: {
            target: "baidu",
            baidu: {
              appKey: fake.appKey,
              secretKey: fake.secretKey,
              folder: FOLDER,
              concurrency: PART_WORKERS,
              endpoints: fake.endpoints,
            },
          },
          state: { dir: state },
        }),
      );
      await sh(agent("migrate", "-c", config, "--quiet"));
      note(`baidu ${set.files}×${fmtSize(set.size)}: image-agent run ${r + 1}`);
      const up = await timed(agent("run", "-c", config, "--json", "--quiet"), {
        keepStdout: true,
      });
      const s = JSON.parse(up.stdout);
      if (s.backedUp !== set.files || s.cleaned !== set.files) {
        throw new Error(`image-agent run to the fake: ${up.stdout}`);
      }
      samples.agentUp.push(up);
      const orders = Array.from(
        { length: set.files },
        (_, i) => `PP-${String(i + 1).padStart(7, "0")}`,
      );
      const down = await timed(
        agent("restore", "-c", config, "--json", "--quiet", ...orders),
        { keepStdout: true },
      );
      samples.agentDown.push(down);
      for (let i = 1; i <= set.files; i++) {
        const st = await Deno.stat(join(images, offloadImage(i)));
        if (st.size !== set.size) throw new Error("restore: wrong size");
      }

      // curl, same fake, same chunks
      note(`baidu ${set.files}×${fmtSize(set.size)}: curl run ${r + 1}`);
      let upSecs = 0;
      let upRss = 0;
      const remotes: string[] = [];
      for (let i = 1; i <= set.files; i++) {
        const remote = `${CURL_FOLDER}/PP-${i}/portrait-${i}.png`;
        const t = await curlUpload(
          c,
          remote,
          set.size,
          cuts[i - 1].chunks,
          cuts[i - 1].md5s,
        );
        upSecs += t.seconds;
        upRss = Math.max(upRss, t.peakRss);
        remotes.push(remote);
      }
      samples.curlUp.push({ seconds: upSecs, peakRss: upRss, stdout: "" });
      const outDir = join(shm, "curl-down");
      await removeTree(outDir);
      samples.curlDown.push(await curlDownload(fake, c, remotes, outDir));
      for (let i = 0; i < set.files; i++) {
        const st = await Deno.stat(join(outDir, `file-${i}`));
        if (st.size !== set.size) throw new Error("curl download: wrong size");
      }
      await removeTree(outDir);
      await removeTree(work);
    } finally {
      await fake.close();
    }
  }
  for (let i = 1; i <= set.files; i++) await removeTree(join(shm, `cut-${i}`));
  await removeTree(base);
  return {
    set,
    upload: {
      agent: summarize(samples.agentUp),
      curl: summarize(samples.curlUp),
    },
    restore: {
      agent: summarize(samples.agentDown),
      curl: summarize(samples.curlDown),
    },
  };
}

export async function benchBaidu(
  dataDir: string,
  shm: string,
  sets: BaiduSet[],
  putOnlySizesMiB: number[],
  runs: number,
  mode: Mode,
): Promise<BaiduResult> {
  const out: BaiduSetResult[] = [];
  for (const set of sets) out.push(await oneSet(dataDir, shm, set, runs));
  const puts: PutOnly[] = [];
  for (const size of putOnlySizesMiB) {
    note(`baidu: scripts/bench/baidu_upload.ts --size-mib ${size}`);
    puts.push(await putOnly(size));
  }
  return {
    mode,
    date: new Date().toISOString(),
    runs,
    sets: out,
    putOnly: puts,
  };
}

const RSS_TARGET = 150 * MIB;

export function renderBaidu(r: BaiduResult | undefined): string {
  const out = [
    "## 3. Baidu Netdisk on loopback: image-agent against curl",
    "",
  ];
  if (!r) {
    out.push("Not run yet: `deno task bench --only baidu`.", "");
    return out.join("\n");
  }
  out.push(
    `Mode: **${r.mode}**, ${
      r.date.slice(0, 16).replace("T", " ")
    } UTC, median of ${r.runs} run(s). Both talk to the fake Baidu of the tests (\`tests/fakes/baidu_server.ts\`, ordinary account: 4 MiB parts) on 127.0.0.1, served by the benchmark process. image-agent: \`image-agent run\` (digest, the order's folder, precreate, ${PART_WORKERS} part workers, create, block-list and metadata check, delete, clear) and \`image-agent restore\` of every order (download, SHA-256 check against the ledger, rename, column back). curl: the order's folder, precreate, every part by \`-F file=@part\` in one curl with \`--parallel-max ${PART_WORKERS}\`, create; then filemetas and every dlink in one curl. curl's parts and MD5s are prepared before the clock starts. Throughput is MB/s (decimal) of image data per wall-clock second, process starts included.`,
    "",
    "| files | direction | image-agent | curl | image-agent ÷ curl | target ≥ 0.80 | image-agent peak RSS | target < 150 MiB | curl peak RSS |",
    "|---|---|---:|---:|---:|---|---:|---|---:|",
  );
  for (const s of r.sets) {
    const bytes = s.set.files * s.set.size;
    for (const dir of ["upload", "restore"] as const) {
      const a = s[dir].agent;
      const c = s[dir].curl;
      const ratio = c.seconds / a.seconds;
      out.push(
        `| ${s.set.files} × ${fmtSize(s.set.size)} | ${dir} | ${
          (bytes / 1e6 / a.seconds).toFixed(0)
        } MB/s (${fmtSeconds(a.seconds)}) | ${
          (bytes / 1e6 / c.seconds).toFixed(0)
        } MB/s (${fmtSeconds(c.seconds)}) | ${fmtRatio(ratio)} | ${
          ratio >= 0.8 ? "met" : "**missed**"
        } | ${fmtMiB(a.peakRss)} | ${
          a.peakRss < RSS_TARGET ? "met" : "**missed**"
        } | ${fmtMiB(c.peakRss)} |`,
      );
    }
  }
  if (r.putOnly.length > 0) {
    out.push(
      "",
      "`BaiduStorage.put` alone, one file, in a child process (`scripts/bench/baidu_upload.ts`, the fake keeping only MD5s; peak RSS read from VmHWM):",
      "",
      "| file | time | MiB/s | peak RSS | target < 150 MiB |",
      "|---:|---:|---:|---:|---|",
    );
    for (const p of r.putOnly) {
      out.push(
        `| ${fmtSize(p.sizeMiB * MIB)} | ${fmtSeconds(p.seconds)} | ${
          p.mibPerSecond.toFixed(0)
        } | ${
          p.peakRssMiB === null ? "?" : `${p.peakRssMiB.toFixed(0)} MiB`
        } | ${
          p.peakRssMiB !== null && p.peakRssMiB < 150 ? "met" : "**missed**"
        } |`,
      );
    }
  }
  out.push("");
  return out.join("\n");
}
