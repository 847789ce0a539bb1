/**
 * Test wiring for the Baidu target: a fake server on loopback, a temp state
 * folder with a saved login, a manual clock (backoff never really sleeps), a
 * memory logger, and the storage built the way `openStorage` builds it.
 */

import { join } from "node:path";
import { ManualClock } from "../../src/clock.ts";
import { memoryLogger } from "../../src/log.ts";
import type { ResumeSlot } from "../../src/storage/storage.ts";
import {
  credentialsPath,
  writeCredentials,
} from "../../src/storage/baidu/credentials.ts";
import { BaiduStorage } from "../../src/storage/baidu/storage.ts";
import { TokenManager } from "../../src/storage/baidu/tokens.ts";
import { FakeBaidu, type FakeBaiduOptions } from "./baidu_server.ts";

export const UNIT = 64 * 1024;

export interface BaiduFixture extends AsyncDisposable {
  fake: FakeBaidu;
  storage: BaiduStorage;
  tokens: TokenManager;
  dir: string;
  credFile: string;
  clock: ManualClock;
  log: ReturnType<typeof memoryLogger>;
  /** Every log line and error text must pass this: no secret inside. */
  secrets(): string[];
}

export interface FixtureOptions extends FakeBaiduOptions {
  concurrency?: number;
  loggedIn?: boolean;
  retries?: number;
  timeoutMs?: number;
  readIdleMs?: number;
  oauthTimeoutMs?: number;
  folder?: string;
  /** Use the member-level chunk sizes instead of 64 KiB parts. */
  realChunks?: boolean;
}

export async function startBaidu(
  options: FixtureOptions = {},
): Promise<BaiduFixture> {
  const clock = new ManualClock("2026-03-01T00:00:00Z");
  const fake = await FakeBaidu.start({
    chunkUnit: UNIT,
    now: () => clock.now().getTime(),
    ...options,
  });
  const dir = await Deno.makeTempDir({ prefix: "image-agent-baidu-" });
  const log = memoryLogger();
  const credFile = credentialsPath(join(dir, "state"));
  if (options.loggedIn !== false) {
    const pair = fake.issueTokens();
    await writeCredentials(credFile, {
      accessToken: pair.access_token,
      refreshToken: pair.refresh_token,
      expiresAt: new Date(fake.accessExpiresAt).toISOString(),
      scope: "basic netdisk",
      appKey: fake.appKey,
      savedAt: clock.now().toISOString(),
    });
  }
  const tokens = new TokenManager(credFile, {
    fetch,
    oauthBase: fake.endpoints.oauth,
    appKey: fake.appKey,
    secretKey: fake.secretKey,
    log,
    timeoutMs: options.oauthTimeoutMs,
  }, clock);
  const storage = new BaiduStorage({
    folder: options.folder ?? "/apps/image-agent/hd",
    endpoints: fake.endpoints,
    tokens,
    fetch,
    clock,
    log,
    concurrency: options.concurrency ?? 3,
    chunkSizeBytes: options.realChunks ? undefined : UNIT,
    retries: options.retries ?? 4,
    timeoutMs: options.timeoutMs,
    readIdleMs: options.readIdleMs,
  });
  return {
    fake,
    storage,
    tokens,
    dir,
    credFile,
    clock,
    log,
    secrets: () =>
      [
        fake.accessToken,
        fake.refreshToken,
        fake.secretKey,
        "SIGNED-SECRET",
        "CDN-SIGNATURE",
        "SK-secret",
      ].filter((s) => s !== ""),
    async [Symbol.asyncDispose]() {
      await fake.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** A resume slot kept in memory, counting saves. */
export function memorySlot(initial?: unknown): ResumeSlot & {
  value: unknown;
  saves: number;
} {
  const slot = {
    value: initial as unknown,
    saves: 0,
    load: () =>
      slot.value === undefined ? undefined : structuredClone(slot.value),
    save: (state: unknown) => {
      slot.value = structuredClone(state);
      slot.saves++;
    },
    clear: () => {
      slot.value = undefined;
    },
  };
  return slot;
}

/** Bytes that differ per seed, so a wrong part is caught. */
export function patternBytes(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** Reads a whole stream. */
export async function readAll(
  stream: ReadableStream<Uint8Array>,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const p of stream) {
    parts.push(p);
    n += p.length;
  }
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Fails instead of hanging when `work` takes longer than `ms`. */
export async function within<T>(ms: number, work: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`still waiting after ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}
