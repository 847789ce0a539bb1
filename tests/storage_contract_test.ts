/** Runs the storage contract against every target. */

import { join } from "node:path";
import { LocalStorage } from "../src/storage/local.ts";
import { storageContract } from "./storage_contract.ts";
import { startBaidu } from "./fakes/baidu_fixture.ts";

storageContract("LocalStorage", async () => {
  const dir = await Deno.makeTempDir({ prefix: "image-agent-local-" });
  const backup = join(dir, "backup");
  await Deno.mkdir(backup);
  const storage = new LocalStorage(backup);
  return {
    storage,
    dir,
    async [Symbol.asyncDispose]() {
      await storage.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
});

storageContract("BaiduStorage", async () => {
  const f = await startBaidu();
  return {
    storage: f.storage,
    dir: f.dir,
    [Symbol.asyncDispose]: () => f[Symbol.asyncDispose](),
  };
});
