/**
 * An agent that claims orders and then hangs, for the test that a dead
 * agent's claims expire: the test kills it with SIGKILL, so nothing is
 * released by hand and the server has to notice the lost session.
 *
 *   deno run -A tests/fakes/claim_and_hang.ts CONFIG_JSON DIR KEY...
 */

import { join } from "node:path";
import { parseConfig } from "../../src/config.ts";
import { openShop } from "../../src/shop/open.ts";

const [configJson, dir, ...keys] = Deno.args;
const config = parseConfig(
  JSON.parse(configJson),
  join(dir, "image-agent.json"),
  { checkPaths: false },
);
const shop = await openShop(config);
const claimed = await shop.claim(keys);
console.log(JSON.stringify(claimed));
// Hang with the session open until killed.
await new Promise(() => setInterval(() => {}, 60_000));
