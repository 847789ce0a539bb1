/**
 * `image-agent baidu ...` run as a subprocess, the way an operator runs it,
 * against the fake on loopback: what lands on stdout and stderr, the exit
 * code, and that no token or secret is ever printed.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { FakeBaidu } from "./fakes/baidu_server.ts";

const ROOT = new URL("..", import.meta.url).pathname;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function setup() {
  const fake = await FakeBaidu.start({ codes: ["good-code"] });
  const dir = await Deno.makeTempDir({ prefix: "image-agent-cli-" });
  const config = join(dir, "image-agent.json");
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      database: { path: "shop.db" },
      images: { root: "images" },
      backup: {
        target: "baidu",
        baidu: {
          appKey: fake.appKey,
          secretKey: fake.secretKey,
          endpoints: fake.endpoints,
        },
      },
      state: { dir: "state" },
    }),
  );
  const run = async (...args: string[]): Promise<Run> => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "main.ts", "baidu", ...args, "--config", config],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const r = {
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
    };
    for (
      const secret of [
        fake.secretKey,
        fake.accessToken,
        fake.refreshToken,
        "SK-secret",
        "SS-secret",
      ]
    ) {
      if (!secret) continue;
      assert.ok(!r.stdout.includes(secret), `secret on stdout: ${r.stdout}`);
      assert.ok(!r.stderr.includes(secret), `secret on stderr: ${r.stderr}`);
    }
    return r;
  };
  return {
    fake,
    dir,
    run,
    credFile: join(dir, "state", "baidu-credentials.json"),
    async [Symbol.asyncDispose]() {
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("image-agent baidu login --code, whoami and quota --json work end to end", async () => {
  await using s = await setup();
  const login = await s.run("login", "--code", "good-code");
  assert.equal(login.code, 0, login.stderr);
  assert.match(
    login.stdout,
    /Logged in to Baidu Netdisk as 宠物画像店 \(ordinary account\)/,
  );
  if (Deno.build.os !== "windows") {
    assert.equal((await Deno.stat(s.credFile)).mode! & 0o777, 0o600);
  }

  const who = await s.run("whoami");
  assert.equal(who.code, 0, who.stderr);
  assert.equal(who.stdout, "宠物画像店 (ordinary account)\n");

  s.fake.put("/apps/image-agent/hd/1/a.jpg", new Uint8Array(3000));
  const quota = await s.run("quota", "--json");
  assert.equal(quota.code, 0, quota.stderr);
  assert.deepEqual(JSON.parse(quota.stdout), {
    used: 3000,
    total: s.fake.quotaTotal,
    free: s.fake.quotaTotal - 3000,
  });

  const human = await s.run("quota");
  assert.match(
    human.stdout,
    /^Used 2\.9 KiB of 2\.0 TiB \(0\.0%\), 2\.0 TiB free\n$/,
  );
});

Deno.test("image-agent baidu login --code with a wrong code exits 1 and says why", async () => {
  await using s = await setup();
  const r = await s.run("login", "--code", "stale-code");
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /Baidu did not accept the authorization code: invalid_grant/,
  );
  assert.ok(!r.stderr.includes("stale-code"), "the code is not echoed");
  assert.equal(r.stdout, "");
});

Deno.test("image-agent baidu login without --code and no terminal exits 2", async () => {
  await using s = await setup();
  const r = await s.run("login");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--code CODE.*--device/);
});

Deno.test(
  "image-agent baidu whoami refuses a credentials file others can read",
  {
    ignore: Deno.build.os === "windows",
  },
  async () => {
    await using s = await setup();
    assert.equal((await s.run("login", "--code", "good-code")).code, 0);
    await Deno.chmod(s.credFile, 0o644);
    const r = await s.run("whoami");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /can be read by other users/);
    assert.match(r.stderr, /chmod 600/);
  },
);

Deno.test("image-agent baidu logout forgets the login; whoami then asks for one", async () => {
  await using s = await setup();
  assert.equal((await s.run("login", "--code", "good-code")).code, 0);
  const out = await s.run("logout");
  assert.equal(out.code, 0);
  assert.match(out.stdout, /Logged out of Baidu Netdisk/);
  const who = await s.run("whoami", "--json");
  assert.equal(who.code, 1);
  assert.match(who.stderr, /Not logged in to Baidu Netdisk/);
  assert.match(who.stderr, /baidu login --device/);
  assert.equal(JSON.parse(who.stdout).error.kind, "AuthRequiredError");
});
