/**
 * The fake Baidu server itself: it must refuse what the real API refuses,
 * or the client tests prove nothing. Each case sends one request the way a
 * client that departs from the protocol would, and checks it fails.
 */

import assert from "node:assert/strict";
import { FakeBaidu, md5 } from "./fakes/baidu_server.ts";

const FOLDER = "/apps/image-agent/hd";

async function withFake(fn: (fake: FakeBaidu, token: string) => Promise<void>) {
  const fake = await FakeBaidu.start({ chunkUnit: 1024 });
  try {
    const { access_token } = fake.issueTokens();
    fake.mkdir(FOLDER);
    await fn(fake, access_token);
  } finally {
    await fake.close();
  }
}

function q(params: Record<string, string>): string {
  return Object.entries(params).map(([k, v]) =>
    `${encodeURIComponent(k)}=${encodeURIComponent(v)}`
  ).join("&");
}

async function call(
  base: string,
  path: string,
  query: Record<string, string>,
  init: { method?: string; form?: Record<string, string> } = {},
): Promise<{ status: number; body: Record<string, unknown> | string }> {
  const res = await fetch(`${base}${path}?${q(query)}`, {
    method: init.method ?? (init.form ? "POST" : "GET"),
    body: init.form ? new URLSearchParams(init.form) : undefined,
  });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch {
    return { status: res.status, body: text };
  }
}

function failed(r: { status: number; body: unknown }): boolean {
  if (r.status >= 400) return true;
  const b = r.body as Record<string, unknown>;
  return typeof b !== "object" || (b.errno !== undefined && b.errno !== 0) ||
    (b.error_code !== undefined && b.error_code !== 0);
}

function precreateForm(size = 10): Record<string, string> {
  return {
    path: `${FOLDER}/a.bin`,
    size: String(size),
    isdir: "0",
    autoinit: "1",
    rtype: "3",
    block_list: JSON.stringify([md5(new Uint8Array(size))]),
  };
}

Deno.test("FakeBaidu serves each host on its own origin and refuses calls to the wrong one", async () => {
  await withFake(async (fake, token) => {
    const origins = new Set([
      fake.endpoints.oauth,
      fake.endpoints.api,
      fake.endpoints.upload,
      fake.cdnUrl,
      ...fake.uploadUrls,
    ]);
    assert.equal(origins.size, 6);
    const uinfo = { method: "uinfo", access_token: token };
    assert.ok(!failed(await call(fake.apiUrl, "/rest/2.0/xpan/nas", uinfo)));
    for (const wrong of [fake.oauthUrl, fake.pcsUrl, fake.cdnUrl]) {
      const r = await call(wrong, "/rest/2.0/xpan/nas", uinfo);
      assert.equal(r.status, 404, wrong);
    }
    const token2 = await call(fake.apiUrl, "/oauth/2.0/token", {
      grant_type: "refresh_token",
      refresh_token: fake.refreshToken,
      client_id: fake.appKey,
      client_secret: fake.secretKey,
    });
    assert.equal(token2.status, 404, "OAuth lives on its own host");
  });
});

Deno.test("FakeBaidu routes by path, HTTP verb and method together", async () => {
  await withFake(async (fake, token) => {
    const list = { method: "list", dir: FOLDER, access_token: token };
    assert.ok(
      failed(
        await call(fake.apiUrl, "/rest/2.0/xpan/file", list, {
          method: "POST",
          form: {},
        }),
      ),
      "list is a GET",
    );
    assert.ok(
      failed(
        await call(fake.apiUrl, "/rest/2.0/xpan/file", {
          method: "filemetas",
          fsids: "[1]",
          access_token: token,
        }),
      ),
      "filemetas lives on /rest/2.0/xpan/multimedia",
    );
    assert.ok(
      failed(
        await call(fake.apiUrl, "/rest/2.0/xpan/file", {
          method: "precreate",
          access_token: token,
        }),
      ),
      "precreate is a POST",
    );
  });
});

Deno.test("FakeBaidu wants only method, opera and access_token in a POST's query", async () => {
  await withFake(async (fake, token) => {
    const form = precreateForm();
    const misplaced = await call(fake.apiUrl, "/rest/2.0/xpan/file", {
      method: "precreate",
      access_token: token,
      path: form.path,
    }, { form });
    assert.ok(failed(misplaced));
    assert.ok(fake.refused.some((r) => /path in the query/.test(r)));
    const good = await call(fake.apiUrl, "/rest/2.0/xpan/file", {
      method: "precreate",
      access_token: token,
    }, { form });
    assert.ok(!failed(good), JSON.stringify(good.body));
  });
});

Deno.test("FakeBaidu precreate checks isdir, rtype, MD5 form, block count and the app folder", async () => {
  await withFake(async (fake, token) => {
    const send = (form: Record<string, string>) =>
      call(fake.apiUrl, "/rest/2.0/xpan/file", {
        method: "precreate",
        access_token: token,
      }, { form });
    const cases: [string, Record<string, string>][] = [
      ["isdir missing", { ...precreateForm(), isdir: "" }],
      ["rtype 9", { ...precreateForm(), rtype: "9" }],
      ["no rtype", (({ rtype: _, ...f }) => f)(precreateForm())],
      ["uppercase MD5", {
        ...precreateForm(),
        block_list: JSON.stringify([md5(new Uint8Array(10)).toUpperCase()]),
      }],
      ["two blocks for 10 bytes", {
        ...precreateForm(),
        block_list: JSON.stringify([
          md5(new Uint8Array(5)),
          md5(new Uint8Array(5)),
        ]),
      }],
      ["one block for 3000 bytes (1 KiB chunks)", {
        ...precreateForm(3000),
        block_list: JSON.stringify([md5(new Uint8Array(3000))]),
      }],
      ["another app's folder", {
        ...precreateForm(),
        path: "/apps/other-app/a.bin",
      }],
      ["outside /apps", { ...precreateForm(), path: "/a.bin" }],
    ];
    for (const [label, form] of cases) {
      assert.ok(failed(await send(form)), label);
    }
    assert.ok(!failed(await send(precreateForm())));
  });
});

Deno.test("FakeBaidu checks locateupload's parameters, superfile2's method and file name, and create's rtype", async () => {
  await withFake(async (fake, token) => {
    const form = precreateForm();
    const pre = await call(fake.apiUrl, "/rest/2.0/xpan/file", {
      method: "precreate",
      access_token: token,
    }, { form });
    const uploadid = (pre.body as Record<string, string>).uploadid;
    const locate = {
      method: "locateupload",
      appid: "250528",
      access_token: token,
      path: form.path,
      uploadid,
      upload_version: "2.0",
    };
    assert.ok(!failed(await call(fake.pcsUrl, "/rest/2.0/pcs/file", locate)));
    for (const key of ["appid", "path", "uploadid", "upload_version"]) {
      const partial = { ...locate, [key]: "x" };
      assert.ok(
        failed(await call(fake.pcsUrl, "/rest/2.0/pcs/file", partial)),
        key,
      );
    }

    const part = (method: string, filename: string) => {
      const fd = new FormData();
      fd.append("file", new File([new Uint8Array(10)], filename));
      return fetch(
        `${fake.uploadUrls[0]}/rest/2.0/pcs/superfile2?${
          q({
            method,
            access_token: token,
            type: "tmpfile",
            path: form.path,
            uploadid,
            partseq: "0",
          })
        }`,
        { method: "POST", body: fd },
      ).then(async (r) => ({ status: r.status, body: await r.json() }));
    };
    assert.ok(failed(await part("uploadpart", "part0")), "method=upload");
    assert.ok(failed(await part("upload", "图.jpg")), "ASCII file name");
    assert.ok(!failed(await part("upload", "part0")));

    const create = (rtype: string) =>
      call(fake.apiUrl, "/rest/2.0/xpan/file", {
        method: "create",
        access_token: token,
      }, { form: { ...form, uploadid, rtype } });
    assert.ok(failed(await create("0")), "rtype differs from precreate's");
    assert.ok(!failed(await create("3")));
  });
});

Deno.test("FakeBaidu deletes only with opera=delete and a JSON list of paths", async () => {
  await withFake(async (fake, token) => {
    fake.put(`${FOLDER}/x/a.bin`, new Uint8Array(3));
    const del = (opera: string, form: Record<string, string>) =>
      call(fake.apiUrl, "/rest/2.0/xpan/file", {
        method: "filemanager",
        opera,
        access_token: token,
      }, { form });
    const filelist = JSON.stringify([`${FOLDER}/x/a.bin`]);
    assert.ok(failed(await del("move", { async: "0", filelist })));
    assert.ok(failed(await del("delete", { filelist })), "async is needed");
    assert.equal(fake.files.size, 1);
    assert.ok(!failed(await del("delete", { async: "0", filelist })));
    assert.equal(fake.files.size, 0);
  });
});

Deno.test("FakeBaidu has real folders: made by create isdir=1, listed, and needed before a file goes in", async () => {
  await withFake(async (fake, token) => {
    const file = (form: Record<string, string>, method = "create") =>
      call(fake.apiUrl, "/rest/2.0/xpan/file", {
        method,
        access_token: token,
      }, { form });
    const orphan = { ...precreateForm(), path: `${FOLDER}/O-1/a.bin` };
    const refused = await file(orphan, "precreate");
    assert.equal((refused.body as Record<string, unknown>).errno, -9);
    assert.ok(
      failed(await file({ path: `${FOLDER}/x/y`, isdir: "1", rtype: "0" })),
      "a folder's parent must exist too",
    );

    assert.ok(!failed(await file({ path: `${FOLDER}/O-1`, isdir: "1" })));
    const again = await file({ path: `${FOLDER}/O-1`, isdir: "1", rtype: "0" });
    assert.equal((again.body as Record<string, unknown>).errno, -8);
    assert.ok(!failed(await file(orphan, "precreate")));

    const empty = await call(fake.apiUrl, "/rest/2.0/xpan/file", {
      method: "list",
      dir: `${FOLDER}/O-1`,
      access_token: token,
    });
    assert.deepEqual(empty.body, {
      errno: 0,
      list: [],
      request_id: (empty.body as Record<string, unknown>).request_id,
    });
    const listed = await call(fake.apiUrl, "/rest/2.0/xpan/file", {
      method: "list",
      dir: FOLDER,
      access_token: token,
    });
    const list = (listed.body as { list: Record<string, unknown>[] }).list;
    assert.deepEqual(list.map((e) => [e.server_filename, e.isdir]), [[
      "O-1",
      1,
    ]]);
  });
});

Deno.test("FakeBaidu answers slow_down to a device poll that comes too soon, and expires the code", async () => {
  let now = Date.parse("2026-03-01T00:00:00Z");
  const fake = await FakeBaidu.start({ now: () => now, deviceExpiresIn: 60 });
  try {
    const device = await call(fake.oauthUrl, "/oauth/2.0/device/code", {
      response_type: "device_code",
      client_id: fake.appKey,
      scope: "basic,netdisk",
    });
    const poll = () =>
      call(fake.oauthUrl, "/oauth/2.0/token", {
        grant_type: "device_token",
        code: String((device.body as Record<string, unknown>).device_code),
        client_id: fake.appKey,
        client_secret: fake.secretKey,
      }).then((r) => (r.body as Record<string, unknown>).error);
    fake.deviceQueue = Array(10).fill("authorization_pending");
    now += 5_000;
    assert.equal(await poll(), "authorization_pending");
    now += 2_000;
    assert.equal(await poll(), "slow_down", "2 s after the last poll");
    now += 5_000;
    assert.equal(await poll(), "slow_down", "the interval is 10 s now");
    now += 15_000;
    assert.equal(await poll(), "authorization_pending", "15 s: waited enough");
    now += 40_000;
    assert.equal(await poll(), "invalid_grant", "expired after 60 s");
  } finally {
    await fake.close();
  }
});
