/**
 * Builds the Baidu pieces from the config and the command's dependencies:
 * the token manager over `state.dir/baidu-credentials.json`, and the
 * storage target or a bare API client for the `baidu` commands.
 */

import type { Config } from "../../config.ts";
import type { Deps } from "../../cli/command.ts";
import type { IoPool } from "../../io/pool.ts";
import { ConfigError } from "../../errors.ts";
import { BaiduApi } from "./api.ts";
import { credentialsPath } from "./credentials.ts";
import { BaiduHttp } from "./http.ts";
import type { OAuthContext } from "./oauth.ts";
import { BaiduStorage } from "./storage.ts";
import { TokenManager } from "./tokens.ts";

type BaiduDeps = Pick<Deps, "fetch" | "clock" | "log">;

export function oauthContext(config: Config, deps: BaiduDeps): OAuthContext {
  const b = config.backup.baidu;
  if (!b.appKey) {
    throw new ConfigError(
      `Config key "backup.baidu.appKey" is missing (the AppKey of your Baidu app)`,
      "backup.baidu.appKey",
    );
  }
  return {
    fetch: deps.fetch,
    oauthBase: b.endpoints.oauth,
    appKey: b.appKey,
    secretKey: b.secretKey,
    log: deps.log,
  };
}

export function tokenManager(config: Config, deps: BaiduDeps): TokenManager {
  return new TokenManager(
    credentialsPath(config.state.dir),
    oauthContext(config, deps),
    deps.clock,
  );
}

export function baiduApi(config: Config, deps: BaiduDeps): BaiduApi {
  const http = new BaiduHttp({
    fetch: deps.fetch,
    clock: deps.clock,
    log: deps.log,
    tokens: tokenManager(config, deps),
  });
  return new BaiduApi(http, config.backup.baidu.endpoints);
}

export function openBaiduStorage(
  config: Config,
  deps: BaiduDeps,
  io: IoPool,
): BaiduStorage {
  const b = config.backup.baidu;
  return new BaiduStorage({
    folder: b.folder,
    endpoints: b.endpoints,
    tokens: tokenManager(config, deps),
    fetch: deps.fetch,
    clock: deps.clock,
    log: deps.log,
    concurrency: b.concurrency,
    chunkSizeMiB: b.chunkSizeMiB,
    io,
  });
}
