/**
 * Benchmark: upload one generated file to the fake Baidu server and report
 * throughput and the uploading process's peak resident memory.
 *
 *   deno run -A scripts/bench/baidu_upload.ts --size-mib 100
 *   deno run -A scripts/bench/baidu_upload.ts --size-mib 1024
 *
 * The fake (keeping only sizes and MD5s, not bytes) runs in this process;
 * the upload runs in a child process, which reads its own peak RSS (VmHWM in
 * /proc/self/status, Linux only) after `put` resolved. Prints one JSON line.
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { systemClock } from "../../src/clock.ts";
import { createLogger } from "../../src/log.ts";
import {
  credentialsPath,
  writeCredentials,
} from "../../src/storage/baidu/credentials.ts";
import { BaiduStorage } from "../../src/storage/baidu/storage.ts";
import { IoPool } from "../../src/io/pool.ts";
import { TokenManager } from "../../src/storage/baidu/tokens.ts";
import { FakeBaidu } from "../../tests/fakes/baidu_server.ts";

const MIB = 1 << 20;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    "size-mib": { type: "string", default: "100" },
    "vip-type": { type: "string", default: "0" },
    concurrency: { type: "string", default: "3" },
    child: { type: "boolean" },
    /** The fake's endpoints block, as JSON. */
    endpoints: { type: "string" },
    file: { type: "string" },
    state: { type: "string" },
  },
});

function peakRssMiB(): number | null {
  try {
    const status = Deno.readTextFileSync("/proc/self/status");
    const m = /VmHWM:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

async function child(): Promise<void> {
  const log = createLogger({ level: "warn" });
  const endpoints = JSON.parse(values.endpoints!);
  const tokens = new TokenManager(credentialsPath(values.state!), {
    fetch,
    oauthBase: endpoints.oauth,
    appKey: "fake-app-key",
    secretKey: "fake-secret-key",
    log,
  }, systemClock);
  // As many workers as a run on this machine starts (src/cli/context.ts).
  const io = new IoPool({
    workers: Math.min(4, navigator.hardwareConcurrency || 2),
  });
  const storage = new BaiduStorage({
    folder: "/apps/image-agent/bench",
    endpoints,
    tokens,
    fetch,
    clock: systemClock,
    log,
    concurrency: Number(values.concurrency),
    io,
  });
  const size = (await Deno.stat(values.file!)).size;
  const started = performance.now();
  const put = await storage.put({
    orderNo: "BENCH-1",
    path: values.file!,
    fileName: "bench.bin",
    size,
  });
  const seconds = (performance.now() - started) / 1000;
  await storage.close();
  await io.close(); // the workers would keep the process alive
  console.log(JSON.stringify({
    sizeMiB: size / MIB,
    seconds: Number(seconds.toFixed(2)),
    mibPerSecond: Number((size / MIB / seconds).toFixed(1)),
    peakRssMiB: peakRssMiB(),
    verifiedBy: put.verifiedBy,
  }));
}

async function parent(): Promise<void> {
  const sizeMiB = Number(values["size-mib"]);
  const fake = await FakeBaidu.start({
    discardBytes: true,
    vipType: Number(values["vip-type"]),
  });
  const dir = await Deno.makeTempDir({ prefix: "image-agent-bench-" });
  try {
    const pair = fake.issueTokens();
    const state = join(dir, "state");
    await writeCredentials(credentialsPath(state), {
      accessToken: pair.access_token,
      refreshToken: pair.refresh_token,
      expiresAt: new Date(Date.now() + 30 * 86400_000).toISOString(),
      scope: "basic netdisk",
      appKey: fake.appKey,
      savedAt: new Date().toISOString(),
    });
    const file = join(dir, "bench.bin");
    {
      using out = await Deno.open(file, { write: true, create: true });
      const piece = new Uint8Array(MIB);
      for (let i = 0; i < sizeMiB; i++) {
        crypto.getRandomValues(piece.subarray(0, 65536));
        piece[65536] = i & 0xff;
        let off = 0;
        while (off < piece.length) off += await out.write(piece.subarray(off));
      }
    }
    const result = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL(import.meta.url).pathname,
        "--child",
        "--endpoints",
        JSON.stringify(fake.endpoints),
        "--file",
        file,
        "--state",
        state,
        "--concurrency",
        String(values.concurrency),
      ],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    const line = new TextDecoder().decode(result.stdout).trim();
    if (result.code !== 0 || !line) {
      throw new Error(`the upload child failed with exit code ${result.code}`);
    }
    const report = JSON.parse(line);
    console.log(JSON.stringify({
      bench: "baidu_upload",
      vipType: Number(values["vip-type"]),
      concurrency: Number(values.concurrency),
      ...report,
      storedBytes: fake.used,
    }));
  } finally {
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  if (values.child) await child();
  else await parent();
}
