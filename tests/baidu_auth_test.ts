/**
 * The Baidu login kept on disk and the token policy: 0600 atomic writes,
 * refusal of a readable file, refresh before expiry and after a token
 * error, rotation saved at once, one refresh for many parts in flight, and
 * the device-code login with its polling rules.
 */

import assert from "node:assert/strict";
import { AuthRequiredError, StorageError } from "../src/errors.ts";
import { memoryLogger } from "../src/log.ts";
import { readCredentials } from "../src/storage/baidu/credentials.ts";
import { baiduCommand } from "../src/cli/baidu.ts";
import type { Deps } from "../src/cli/command.ts";
import {
  patternBytes,
  startBaidu,
  UNIT,
  within,
} from "./fakes/baidu_fixture.ts";
import { join } from "node:path";

const POSIX = Deno.build.os !== "windows";
const FOLDER = "/apps/image-agent/hd";

async function put(f: Awaited<ReturnType<typeof startBaidu>>, size: number) {
  const path = join(f.dir, `${crypto.randomUUID()}.jpg`);
  await Deno.writeFile(path, patternBytes(size, 11));
  return await f.storage.put({
    orderNo: "T-1",
    path,
    fileName: "t.jpg",
    size,
  });
}

Deno.test({
  name: "writeCredentials() writes mode 0600 and leaves no temp file",
  ignore: !POSIX,
  fn: async () => {
    await using f = await startBaidu();
    assert.equal((await Deno.stat(f.credFile)).mode! & 0o777, 0o600);
    const names = [...Deno.readDirSync(join(f.dir, "state"))].map((e) =>
      e.name
    );
    assert.deepEqual(names, ["baidu-credentials.json"]);
  },
});

Deno.test({
  name:
    "readCredentials() refuses a file other users can read, naming chmod 600",
  ignore: !POSIX,
  fn: async () => {
    await using f = await startBaidu();
    await Deno.chmod(f.credFile, 0o644);
    await assert.rejects(readCredentials(f.credFile), (err) => {
      assert.ok(err instanceof StorageError);
      assert.equal(err.failure, "stop");
      assert.match(err.message, /can be read by other users \(mode 0644\)/);
      assert.match(err.hint ?? "", /chmod 600/);
      return true;
    });
    await assert.rejects(put(f, 100), /mode 0644/);
  },
});

Deno.test("TokenManager refreshes once after a token error and saves the rotated pair", async () => {
  await using f = await startBaidu();
  const oldRefresh = f.fake.refreshToken;
  f.fake.expireAccessToken();
  await put(f, 2 * UNIT);
  assert.equal(f.fake.calls.get("token"), 1);
  const saved = await readCredentials(f.credFile);
  assert.equal(saved?.accessToken, f.fake.accessToken);
  assert.equal(saved?.refreshToken, f.fake.refreshToken);
  assert.notEqual(
    saved?.refreshToken,
    oldRefresh,
    "the new refresh token is kept",
  );
  if (POSIX) assert.equal((await Deno.stat(f.credFile)).mode! & 0o777, 0o600);
});

Deno.test("TokenManager refreshes a day before the token expires, without an error first", async () => {
  await using f = await startBaidu();
  f.clock.advance(29.5 * 86400_000);
  await f.storage.admit([]);
  await f.storage.stat("/apps/image-agent/hd/none/x.jpg");
  assert.equal(f.fake.calls.get("token"), 1);
  assert.ok(!f.fake.log.some((l) => l.includes("dead-")));
});

Deno.test("TokenManager keeps a one-hour token until half its life is gone, then refreshes it once", async () => {
  await using f = await startBaidu({ tokenLifetimeSec: 3600, concurrency: 4 });
  await put(f, 6 * UNIT);
  for (let i = 0; i < 5; i++) await f.storage.stat(`${FOLDER}/none/x.jpg`);
  assert.equal(f.fake.calls.get("token"), undefined, "no refresh at first");

  f.clock.advance(31 * 60_000); // 29 minutes left: under half its life
  await put(f, 6 * UNIT);
  await f.storage.stat(`${FOLDER}/none/x.jpg`);
  assert.equal(f.fake.calls.get("token"), 1, "one refresh, then a new hour");
  const saved = await readCredentials(f.credFile);
  assert.equal(saved?.accessToken, f.fake.accessToken);
});

Deno.test("TokenManager never refreshes a token under a minute old before Baidu refuses it", async () => {
  await using f = await startBaidu({ tokenLifetimeSec: 90 });
  f.clock.advance(50_000); // 40 s left, under half of 90 s, but 50 s old
  await f.storage.stat(`${FOLDER}/none/x.jpg`);
  assert.equal(f.fake.calls.get("token"), undefined);
  f.clock.advance(11_000);
  await f.storage.stat(`${FOLDER}/none/x.jpg`);
  assert.equal(f.fake.calls.get("token"), 1);
});

Deno.test("TokenManager refreshes once for many parts in flight", async () => {
  await using f = await startBaidu({ concurrency: 4 });
  const path = join(f.dir, "big.jpg");
  await Deno.writeFile(path, patternBytes(12 * UNIT, 2));
  let expired = false;
  await f.storage.put({
    orderNo: "T-2",
    path,
    fileName: "big.jpg",
    size: 12 * UNIT,
  }, {
    onProgress: () => {
      if (!expired) {
        expired = true;
        f.fake.expireAccessToken();
      }
    },
  });
  assert.equal(f.fake.calls.get("token"), 1, "one refresh, shared");
});

Deno.test("TokenManager stops with a login hint when the refresh is refused", async () => {
  await using f = await startBaidu();
  f.fake.expireAccessToken();
  f.fake.refreshToken = `RT-other-${crypto.randomUUID()}`;
  await assert.rejects(put(f, 100), (err) => {
    assert.ok(err instanceof AuthRequiredError);
    assert.match(err.message, /log in again/);
    for (const s of f.secrets()) assert.ok(!err.message.includes(s));
    return true;
  });
});

Deno.test("TokenManager gives up on a refresh the OAuth host never answers; a later call refreshes", async () => {
  await using f = await startBaidu({ oauthTimeoutMs: 200 });
  f.fake.expireAccessToken();
  f.fake.fail("token", { stall: true });
  await assert.rejects(within(10_000, put(f, 2 * UNIT)), (err) => {
    assert.ok(err instanceof StorageError, String(err));
    assert.equal(err.failure, "retry");
    assert.match(err.message, /Cannot reach Baidu Netdisk for the login/);
    for (const s of f.secrets()) assert.ok(!err.message.includes(s));
    return true;
  });
  await put(f, 2 * UNIT);
  assert.equal(f.fake.calls.get("token"), 2);
});

Deno.test("TokenManager takes a server error from the OAuth host as a retry, not a lost login", async () => {
  await using f = await startBaidu();
  f.fake.expireAccessToken();
  f.fake.fail("token", { status: 502 });
  await assert.rejects(put(f, 2 * UNIT), (err) => {
    assert.ok(!(err instanceof AuthRequiredError), String(err));
    assert.ok(err instanceof StorageError);
    assert.equal(err.failure, "retry");
    return true;
  });
  await put(f, 2 * UNIT);
});

Deno.test("BaiduStorage retries xpan errno 111 (task running) without refreshing", async () => {
  await using f = await startBaidu();
  const done = await put(f, 100);
  f.fake.fail("delete", { errno: 111, msg: "async task running" }, 2);
  await f.storage.remove([done.remotePath]);
  assert.equal(f.fake.calls.get("token"), undefined);
  assert.equal(f.fake.files.size, 0);
});

Deno.test("BaiduStorage refreshes on PCS error_code 111 from the upload host", async () => {
  await using f = await startBaidu();
  f.fake.fail("upload", {
    errorCode: 111,
    status: 401,
    msg: "Access token expired",
  });
  await put(f, 2 * UNIT);
  assert.equal(f.fake.calls.get("token"), 1);
});

Deno.test("BaiduStorage without a login asks for one", async () => {
  await using f = await startBaidu({ loggedIn: false });
  await assert.rejects(put(f, 100), (err) => {
    assert.ok(err instanceof AuthRequiredError);
    assert.match(err.message, /Not logged in to Baidu Netdisk/);
    return true;
  });
});

async function deviceDeps(f: Awaited<ReturnType<typeof startBaidu>>) {
  const config = join(f.dir, "image-agent.json");
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      database: { path: "shop.db" },
      images: { root: "images" },
      backup: {
        target: "baidu",
        baidu: {
          appKey: f.fake.appKey,
          secretKey: f.fake.secretKey,
          endpoints: f.fake.endpoints,
        },
      },
      state: { dir: "state2" },
    }),
  );
  const out: string[] = [];
  const log = memoryLogger();
  const clock = f.clock; // the fake keeps the device code's time by it
  const deps: Deps = {
    clock,
    log,
    stdout: (t) => out.push(t),
    env: () => undefined,
    interactive: false,
    prompt: () => null,
    signal: new AbortController().signal,
    trigger: "manual",
    execPath: "image-agent",
    fetch,
  };
  return { deps, out, log, clock, config };
}

Deno.test("baidu login --device shows the code, waits while pending, slows down when told", async () => {
  await using f = await startBaidu({ loggedIn: false });
  f.fake.deviceQueue = [
    "authorization_pending",
    "slow_down",
    "authorization_pending",
  ];
  const { deps, out, log, clock, config } = await deviceDeps(f);
  const start = clock.now().getTime();
  const code = await baiduCommand.run(deps, [
    "login",
    "--device",
    "--config",
    config,
  ]);
  assert.equal(code, 0);
  assert.ok(
    log.lines.some((l) => l.includes("ABCD-1234") && l.includes("/device")),
  );
  assert.equal(clock.now().getTime() - start, (5 + 5 + 10 + 10) * 1000);
  assert.match(
    out.join(""),
    /Logged in to Baidu Netdisk as 宠物画像店 \(ordinary account\)/,
  );
  const saved = await readCredentials(
    join(f.dir, "state2", "baidu-credentials.json"),
  );
  assert.equal(saved?.accessToken, f.fake.accessToken);
  for (const s of f.secrets()) {
    assert.ok(!out.join("").includes(s));
    assert.ok(!log.lines.join("\n").includes(s));
  }
});

Deno.test('baidu login --device waits out a poll with no answer and Baidu\'s "Trigger security policy"', async () => {
  await using f = await startBaidu({ loggedIn: false });
  f.fake.deviceQueue = ["authorization_pending"]; // its answer is lost
  f.fake.fail("token", { lost: true });
  f.fake.fail("token", { oauthError: "Trigger security policy" });
  const { deps, out, clock, config } = await deviceDeps(f);
  const start = clock.now().getTime();
  const code = await baiduCommand.run(deps, [
    "login",
    "--device",
    "--config",
    config,
  ]);
  assert.equal(code, 0);
  assert.equal(clock.now().getTime() - start, (5 + 10 + 15) * 1000);
  assert.match(out.join(""), /Logged in to Baidu Netdisk/);
});

Deno.test("baidu login warns when Baidu's token answer names no scope", async () => {
  await using f = await startBaidu({ loggedIn: false });
  f.fake.tokenScope = null;
  const { deps, log, config } = await deviceDeps(f);
  const code = await baiduCommand.run(deps, [
    "login",
    "--device",
    "--config",
    config,
  ]);
  assert.equal(code, 0);
  assert.ok(
    log.lines.some((l) => /does not say what access it grants/.test(l)),
    log.lines.join("\n"),
  );
});

Deno.test("baidu login --device gives up cleanly when the code expires", async () => {
  await using f = await startBaidu({ loggedIn: false });
  f.fake.deviceQueue = Array(400).fill("authorization_pending");
  const { deps, config } = await deviceDeps(f);
  await assert.rejects(
    baiduCommand.run(deps, ["login", "--device", "--config", config]),
    (err) => {
      assert.ok(err instanceof AuthRequiredError);
      assert.match(err.message, /expired/);
      return true;
    },
  );
});
