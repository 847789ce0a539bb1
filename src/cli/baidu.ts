/**
 * `image-agent baidu`: log in to Baidu Netdisk (device code for a server
 * reached over SSH, or an authorization code), log out, show the account
 * and the quota. Tokens go to `state.dir/baidu-credentials.json` (mode
 * 0600) and never appear on screen, in the log or in `--json` output.
 */

import {
  type Command,
  COMMON_HELP,
  type Deps,
  parseCommandArgs,
  printJson,
} from "./command.ts";
import { renderQr } from "./qr.ts";
import { readConfig } from "./context.ts";
import { AuthRequiredError, StorageError, UsageError } from "../errors.ts";
import { formatBytes } from "../log.ts";
import type { Config } from "../config.ts";
import {
  credentialsPath,
  removeCredentials,
  writeCredentials,
} from "../storage/baidu/credentials.ts";
import {
  authorizeUrl,
  exchangeCode,
  type OAuthContext,
  pollDeviceToken,
  requestDeviceCode,
  toCredentials,
  type TokenAnswer,
} from "../storage/baidu/oauth.ts";
import { baiduApi, oauthContext } from "../storage/baidu/open_baidu.ts";
import { vipName } from "../storage/baidu/digest.ts";
import { toStorageError } from "../storage/baidu/errors.ts";

const HELP = `Usage: image-agent baidu login --device
       image-agent baidu login [--code CODE]
       image-agent baidu logout | whoami | quota

Log in to Baidu Netdisk and look at the account the backups go to.

  login --device   device-code login, made for a server reached over SSH:
                   open the address shown on any phone or computer, enter
                   the code, and the agent picks up the login by itself
  login --code C   exchange an authorization code; without --code at a
                   terminal the authorization address is printed and the
                   code is read from the prompt
  logout           forget the saved login
  whoami           account name and VIP level
  quota            used and total space (--json for bytes)

The login is kept in <state.dir>/baidu-credentials.json with mode 0600;
a file others can read is refused (fix it with chmod 600).

${COMMON_HELP}
`;

export const baiduCommand: Command = {
  name: "baidu",
  summary: "log in to Baidu Netdisk, log out, show the account and quota",
  help: HELP,
  async run(deps, argv) {
    const { values, positionals } = parseCommandArgs("baidu", argv, {
      device: { type: "boolean" },
      code: { type: "string" },
    }, true);
    const [action, ...extra] = positionals;
    if (!action || extra.length > 0) {
      throw new UsageError(
        action
          ? `Unexpected argument "${extra[0]}" for 'baidu ${action}'`
          : "Missing what to do: login, logout, whoami or quota",
        { hint: "see 'image-agent baidu --help'" },
      );
    }
    if (action !== "login" && (values.device || values.code !== undefined)) {
      throw new UsageError(`--device and --code only go with 'baidu login'`);
    }
    const config = readConfig(deps, values.config, false);
    const json = values.json ?? false;
    try {
      switch (action) {
        case "login":
          if (values.device && values.code !== undefined) {
            throw new UsageError("Use either --device or --code, not both");
          }
          return await login(
            deps,
            config,
            json,
            values.device ?? false,
            values.code,
          );
        case "logout":
          return await logout(deps, config, json);
        case "whoami":
          return await whoami(deps, config, json);
        case "quota":
          return await quota(deps, config, json);
      }
    } catch (err) {
      throw toStorageError(err, `'baidu ${action}'`);
    }
    throw new UsageError(`Unknown action "${action}" for 'baidu'`, {
      hint: "use login, logout, whoami or quota",
    });
  },
};

async function login(
  deps: Deps,
  config: Config,
  json: boolean,
  device: boolean,
  code: string | undefined,
): Promise<number> {
  const ctx = oauthContext(config, deps);
  if (!ctx.secretKey) {
    throw new UsageError(
      `Config key "backup.baidu.secretKey" is missing (the SecretKey of your Baidu app)`,
    );
  }
  let answer: TokenAnswer;
  if (device) {
    answer = await deviceLogin(deps, ctx);
  } else {
    if (code === undefined) {
      if (!deps.interactive) {
        throw new UsageError(
          "No one is at a terminal to paste a code: use 'baidu login --code CODE' or 'baidu login --device'",
        );
      }
      deps.log.info(
        `Open this address in a browser, allow access, and paste the code Baidu shows:\n  ${
          authorizeUrl(ctx)
        }`,
      );
      code = deps.prompt("Authorization code:")?.trim() ?? "";
    }
    if (!code) throw new UsageError("No authorization code was given");
    answer = await exchangeCode(ctx, code);
  }
  const file = credentialsPath(config.state.dir);
  await writeCredentials(
    file,
    toCredentials(answer, ctx.appKey, deps.clock.now()),
  );
  const account = await baiduApi(config, deps).account(deps.signal);
  if (json) {
    printJson(deps, {
      loggedIn: true,
      account: account.name,
      vipType: account.vipType,
      vipLevel: vipName(account.vipType),
    });
  } else {
    deps.stdout(
      `Logged in to Baidu Netdisk as ${account.name} (${
        vipName(account.vipType)
      } account)\n`,
    );
  }
  deps.log.info(`Login saved in ${file}`);
  return 0;
}

async function deviceLogin(
  deps: Deps,
  ctx: OAuthContext,
): Promise<TokenAnswer> {
  const dc = await requestDeviceCode(ctx);
  if (deps.interactive) {
    // The pre-filled address is not documented by Baidu; the code below the
    // picture is still there to type if the page asks for it.
    const url = `${dc.verificationUrl}${
      dc.verificationUrl.includes("?") ? "&" : "?"
    }display=mobile&code=${encodeURIComponent(dc.userCode)}`;
    deps.log.info(`Scan with a phone:\n${renderQr(url)}`);
  }
  deps.log.info(
    `To log in, open ${dc.verificationUrl} on any phone or computer and enter the code:\n\n    ${dc.userCode}\n\nWaiting for the approval (the code is valid ${
      Math.round(dc.expiresIn / 60)
    } minutes)...`,
  );
  const deadline = deps.clock.now().getTime() + dc.expiresIn * 1000;
  let interval = Math.max(1, dc.interval);
  for (;;) {
    await deps.clock.sleep(interval * 1000, deps.signal);
    if (deps.clock.now().getTime() > deadline) {
      throw new AuthRequiredError(
        "The login code expired before it was approved; run 'image-agent baidu login --device' again",
      );
    }
    let r: Awaited<ReturnType<typeof pollDeviceToken>>;
    try {
      r = await pollDeviceToken(ctx, dc.deviceCode);
    } catch (err) {
      // A poll that got no answer (a network blip, a server error) changes
      // nothing: the code is still good; wait longer and ask again.
      if (!(err instanceof StorageError) || err.failure !== "retry") throw err;
      interval += 5;
      deps.log.debug(`baidu device poll failed; next one in ${interval}s`);
      continue;
    }
    if (!("error" in r)) return r;
    if (r.error === "authorization_pending") continue;
    if (r.error === "slow_down" || r.error === "Trigger security policy") {
      // "Trigger security policy": Baidu's own "try again later" (1.6).
      interval += 5;
      deps.log.debug(`baidu asked to poll more slowly: every ${interval}s`);
      continue;
    }
    if (r.error === "authorization_declined" || r.error === "access_denied") {
      throw new AuthRequiredError("The login was declined on the Baidu page");
    }
    if (r.error === "expired_token" || r.error === "invalid_grant") {
      throw new AuthRequiredError(
        "The login code expired or was already used; run 'image-agent baidu login --device' again",
      );
    }
    throw new AuthRequiredError(`Baidu refused the device login: ${r.error}`);
  }
}

async function logout(
  deps: Deps,
  config: Config,
  json: boolean,
): Promise<number> {
  const file = credentialsPath(config.state.dir);
  const removed = await removeCredentials(file);
  if (json) printJson(deps, { loggedOut: removed });
  else {deps.stdout(
      removed
        ? `Logged out of Baidu Netdisk (removed ${file})\n`
        : "Not logged in to Baidu Netdisk\n",
    );}
  return 0;
}

async function whoami(
  deps: Deps,
  config: Config,
  json: boolean,
): Promise<number> {
  const account = await baiduApi(config, deps).account(deps.signal);
  if (json) {
    printJson(deps, {
      account: account.name,
      vipType: account.vipType,
      vipLevel: vipName(account.vipType),
    });
  } else {
    deps.stdout(`${account.name} (${vipName(account.vipType)} account)\n`);
  }
  return 0;
}

async function quota(
  deps: Deps,
  config: Config,
  json: boolean,
): Promise<number> {
  const q = await baiduApi(config, deps).quota(deps.signal);
  if (json) {
    printJson(deps, { used: q.used, total: q.total, free: q.free });
  } else {
    const pct = q.total > 0 ? ((q.used / q.total) * 100).toFixed(1) : "0";
    deps.stdout(
      `Used ${formatBytes(q.used)} of ${formatBytes(q.total)} (${pct}%), ${
        formatBytes(q.free)
      } free\n`,
    );
  }
  return 0;
}
