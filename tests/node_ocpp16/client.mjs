// An OCPP 1.6J charging station written independently of the Python `ocpp` package, to
// hold `v2ghub serve` against the protocol as another implementation reads it.
//
// ocpp-rpc in strict mode validates every frame, in both directions, against the official
// OCPP 1.6 JSON schemas: a request or answer of the CSMS that breaks them is a failure.
//
//   node client.mjs --url ws://127.0.0.1:9000/ocpp --station CP1 [options]
//   (password: --password or the environment variable OCPP_PASSWORD)
//
// The station boots, authorizes, starts a transaction, answers what the CSMS asks
// (GetConfiguration, SetChargingProfile, GetCompositeSchedule, ClearChargingProfile), meters
// the vehicle at the limit of the profile in force, sends three malformed frames (checking
// each gets a CALLERROR and that a Heartbeat is still answered), stops the transaction and
// prints one JSON line of what happened. Exit 0: everything as OCPP 1.6 has it; exit 1:
// the first line of stderr names what went wrong (the partial report follows it).
//
// Its clock is the CSMS's: BootNotification's currentTime, running `--speed` times faster
// than the wall clock (the server's scaled clock in a test).

import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { RPCClient } from 'ocpp-rpc';

const CONNECTOR_ID = 1;
const MS_PER_HOUR = 3_600_000;
// OCPP-J 1.6, 4.2.3, Table 7 "Valid Error Codes". The errata (5.1, 5.2) keeps the spelling
// of FormationViolation and OccurenceConstraintViolation for 1.6; FormatViolation and
// OccurrenceConstraintViolation are OCPP 2.x codes.
const CALL_ERROR_CODES = new Set([
  'NotImplemented', 'NotSupported', 'InternalError', 'ProtocolError', 'SecurityError',
  'FormationViolation', 'PropertyConstraintViolation', 'OccurenceConstraintViolation',
  'TypeConstraintViolation', 'GenericError',
]);
// Frames the CSMS must refuse with a CALLERROR (sent past the strict validation).
const MALFORMED = [
  { messageId: 'bad-1', frame: '[2,"bad-1","Heartbeat",' },
  { messageId: 'bad-2', frame: '[2,"bad-2","StartTransaction",{"connectorId":"one"}]' },
  { messageId: 'bad-3', frame: '[2,"bad-3","Heartbeat",{"unexpected":true}]' },
];
const CONFIGURATION = {
  ChargingScheduleAllowedChargingRateUnit: 'Power',
  NumberOfConnectors: '1',
  ConnectorPhaseRotation: '1.RST',
};

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    station: { type: 'string' },
    password: { type: 'string' },
    'id-tag': { type: 'string', default: 'NODE-TAG-1' },
    'meter-start': { type: 'string', default: '10000' },
    'max-power-w': { type: 'string', default: '11000' },
    'meter-values': { type: 'string', default: '3' },
    'meter-interval-ms': { type: 'string', default: '500' },
    speed: { type: 'string', default: '1' },
    'timeout-ms': { type: 'string', default: '15000' },
  },
});

function number(name) {
  const value = Number(args[name]);
  if (!Number.isFinite(value) || value < 0) {
    usage(`--${name} must be a number >= 0, got ${JSON.stringify(args[name])}`);
  }
  return value;
}

function usage(message) {
  process.stderr.write(`client.mjs: ${message}\n`);
  process.exit(2);
}

const password = args.password ?? process.env.OCPP_PASSWORD;
if (!args.url || !args.station || !password) {
  usage('--url, --station and a password (--password or OCPP_PASSWORD) are required');
}
const meterStartWh = Math.round(number('meter-start'));
const maxPowerW = number('max-power-w');
const meterValueCount = Math.round(number('meter-values'));
const meterIntervalMs = number('meter-interval-ms');
const speed = number('speed');
const timeoutMs = number('timeout-ms');
if (!(speed > 0)) usage('--speed must be > 0');

// --- what happened -------------------------------------------------------------------------

const report = {
  ok: false,
  stationId: args.station,
  protocol: null,
  boot: null,
  configurationAsked: [],
  transactionId: null,
  startedAt: null,
  meterStart: meterStartWh,
  profiles: [],
  compositeSchedules: [],
  cleared: [],
  meterValues: [],
  callErrors: [],
  heartbeatAfterMalformed: null,
  stoppedAt: null,
  meterStop: null,
  stopAnswer: null,
  unexpectedCalls: [],
  schemaViolations: [],
  problems: [],
};

class Failure extends Error {}

function fail(message) {
  throw new Failure(message);
}

// --- the station's clock and meter ------------------------------------------------------

const clock = {
  atMs: null, // CSMS time at wallMs
  wallMs: null,
  set(iso) {
    this.atMs = Date.parse(iso);
    this.wallMs = performance.now();
  },
  nowMs() {
    return this.atMs + (performance.now() - this.wallMs) * speed;
  },
  nowIso() {
    return new Date(this.nowMs()).toISOString();
  },
};

const meter = {
  registerWh: meterStartWh,
  atMs: null,
  powerW: 0,
  // Integrate the power drawn so far, then draw at the limit in force from now on.
  advance(toMs) {
    if (this.atMs !== null) {
      this.registerWh += (this.powerW * Math.max(0, toMs - this.atMs)) / MS_PER_HOUR;
    }
    this.atMs = toMs;
  },
  follow() {
    this.advance(clock.nowMs());
    this.powerW = charging ? Math.min(maxPowerW, limitInForceW()) : 0;
  },
  readingWh() {
    return Math.floor(this.registerWh);
  },
};

let charging = false;
let transactionStarting = null; // the StartTransaction call, until it is answered
const installed = new Map(); // chargingProfileId -> {connectorId, profile}

// The limit of the profile that governs connector 1 now (OCPP 1.6, 3.13): the
// transaction's TxProfile, else a TxDefaultProfile (connector 1's before connector 0's).
function limitInForceW() {
  const profiles = [...installed.values()];
  const pick = (purpose, connectors) =>
    profiles
      .filter((p) => p.profile.chargingProfilePurpose === purpose && connectors.includes(p.connectorId))
      .sort((a, b) => b.profile.stackLevel - a.profile.stackLevel)[0];
  const governing =
    pick('TxProfile', [CONNECTOR_ID]) ?? pick('TxDefaultProfile', [CONNECTOR_ID]) ??
    pick('TxDefaultProfile', [0]);
  return governing ? governing.profile.chargingSchedule.chargingSchedulePeriod[0].limit : maxPowerW;
}

// --- waiting for what the CSMS does ---------------------------------------------------------

const waiters = new Set();

function changed() {
  for (const waiter of [...waiters]) {
    if (waiter.ready()) {
      waiter.settle(null);
    } else if (disconnected) {
      waiter.settle(new Failure(`${disconnected} while waiting for ${waiter.what}`));
    }
  }
}

function waitFor(what, ready) {
  if (ready()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => waiter.settle(new Failure(`timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
    const waiter = {
      what,
      ready,
      settle(error) {
        waiters.delete(waiter);
        clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      },
    };
    waiters.add(waiter);
  });
}

// --- the client -------------------------------------------------------------------------

const client = new RPCClient({
  endpoint: args.url,
  identity: args.station,
  password,
  protocols: ['ocpp1.6'],
  strictMode: true,
  reconnect: false,
  callTimeoutMs: timeoutMs,
});

let awaitedFrame = null; // the malformed frame whose CALLERROR is awaited

client.on('strictValidationFailure', ({ method, outbound, isCall, error, params, result }) => {
  report.schemaViolations.push({
    from: outbound ? 'station' : 'csms',
    frame: `${method}.${isCall ? 'req' : 'conf'}`,
    error: error.message,
    payload: isCall ? params : result,
  });
  changed();
});

client.on('message', ({ message, outbound }) => {
  if (outbound) return;
  let frame;
  try {
    frame = JSON.parse(message);
  } catch {
    report.problems.push(`the CSMS sent a frame that is not JSON: ${message.slice(0, 200)}`);
    return;
  }
  if (!Array.isArray(frame) || frame[0] !== 4) return;
  const answered = MALFORMED.some((m) => m.messageId === frame[1]) || frame[1] === '-1';
  if (!answered) return; // a CALLERROR to one of our calls: the call rejects with it
  const [, messageId, errorCode, errorDescription, errorDetails] = frame;
  if (frame.length !== 5 || typeof errorDescription !== 'string' ||
      errorDetails === null || typeof errorDetails !== 'object' || Array.isArray(errorDetails)) {
    report.problems.push(`a CALLERROR is not [4, id, code, description, {details}]: ${message}`);
  }
  if (!CALL_ERROR_CODES.has(errorCode)) {
    report.problems.push(
      `CALLERROR ${JSON.stringify(errorCode)} to ${awaitedFrame} is not an OCPP-J 1.6 error ` +
        'code (4.2.3, Table 7; 1.6 spells it FormationViolation)',
    );
  }
  report.callErrors.push({ sent: awaitedFrame, messageId, errorCode, errorDescription, errorDetails });
  changed();
});

let disconnected = null;
client.on('close', ({ code, reason }) => {
  disconnected = `the connection closed (${code} ${String(reason)})`;
  changed();
});

function asked(method, handler) {
  client.handle(method, async ({ params }) => {
    try {
      return await handler(params);
    } finally {
      changed();
    }
  });
}

asked('GetConfiguration', (params) => {
  const keys = params.key ?? Object.keys(CONFIGURATION);
  report.configurationAsked.push(keys);
  return {
    configurationKey: keys
      .filter((key) => key in CONFIGURATION)
      .map((key) => ({ key, readonly: true, value: CONFIGURATION[key] })),
    unknownKey: keys.filter((key) => !(key in CONFIGURATION)),
  };
});

asked('SetChargingProfile', async (params) => {
  if (params.csChargingProfiles.chargingProfilePurpose === 'TxProfile' && transactionStarting) {
    await transactionStarting.catch(() => {});
  }
  const { connectorId, csChargingProfiles: profile } = params;
  const schedule = profile.chargingSchedule;
  const seen = {
    connectorId,
    chargingProfileId: profile.chargingProfileId,
    transactionId: profile.transactionId ?? null,
    stackLevel: profile.stackLevel,
    purpose: profile.chargingProfilePurpose,
    kind: profile.chargingProfileKind,
    unit: schedule.chargingRateUnit,
    limits: schedule.chargingSchedulePeriod.map((period) => period.limit),
    startSchedule: schedule.startSchedule ?? null,
    receivedAt: clock.nowIso(),
    status: 'Accepted',
  };
  report.profiles.push(seen);
  const refuse = (why) => {
    report.problems.push(`SetChargingProfile ${profile.chargingProfileId}: ${why}`);
    seen.status = 'Rejected';
    return { status: 'Rejected' };
  };
  if (schedule.chargingRateUnit !== 'W') {
    return refuse(`unit ${schedule.chargingRateUnit}, but the station takes only Power (W)`);
  }
  if (seen.limits.some((limit) => limit < 0)) {
    return refuse(`negative limit ${seen.limits} sent to a station that cannot discharge`);
  }
  if (profile.chargingProfilePurpose === 'TxProfile') {
    // OCPP 1.6, 5.16: a TxProfile without a transaction on its connector is rejected.
    if (!charging || profile.transactionId !== report.transactionId || connectorId !== CONNECTOR_ID) {
      return refuse(
        `TxProfile for transaction ${profile.transactionId} on connector ${connectorId}, but ` +
          `transaction ${report.transactionId} runs on connector ${CONNECTOR_ID} (charging: ${charging})`,
      );
    }
  } else if (profile.chargingProfilePurpose === 'TxDefaultProfile') {
    if (![0, CONNECTOR_ID].includes(connectorId)) {
      return refuse(`TxDefaultProfile on connector ${connectorId}, which does not exist`);
    }
  }
  installed.set(profile.chargingProfileId, { connectorId, profile });
  meter.follow();
  return { status: 'Accepted' };
});

asked('GetCompositeSchedule', (params) => {
  const txProfiles = report.profiles.filter((p) => p.purpose === 'TxProfile' && p.status === 'Accepted');
  const last = txProfiles.at(-1);
  const seen = { ...params, answeredLimit: last ? last.limits[0] : null };
  report.compositeSchedules.push(seen);
  if (!last) return { status: 'Rejected' };
  if (params.chargingRateUnit !== undefined && params.chargingRateUnit !== 'W') {
    report.problems.push(`GetCompositeSchedule in ${params.chargingRateUnit}: the station takes only W`);
  }
  return {
    status: 'Accepted',
    connectorId: params.connectorId,
    scheduleStart: clock.nowIso(),
    chargingSchedule: {
      duration: params.duration,
      chargingRateUnit: 'W',
      chargingSchedulePeriod: [{ startPeriod: 0, limit: last.limits[0] }],
    },
  };
});

asked('ClearChargingProfile', (params) => {
  report.cleared.push(params);
  const matches = [...installed.entries()].filter(([id, { connectorId, profile }]) =>
    (params.id === undefined || params.id === id) &&
    (params.connectorId === undefined || params.connectorId === connectorId) &&
    (params.chargingProfilePurpose === undefined ||
      params.chargingProfilePurpose === profile.chargingProfilePurpose) &&
    (params.stackLevel === undefined || params.stackLevel === profile.stackLevel));
  for (const [id] of matches) installed.delete(id);
  meter.follow();
  return { status: matches.length ? 'Accepted' : 'Unknown' };
});

client.handle(({ method, params }) => {
  report.unexpectedCalls.push({ method, params });
  changed();
  throw Object.assign(new Error(`this station does not handle ${method}`), {
    rpcErrorCode: 'NotImplemented',
  });
});

// --- the session ---------------------------------------------------------------------------

function meterValue(atIso) {
  return {
    timestamp: atIso,
    sampledValue: [
      {
        value: String(meter.readingWh()),
        context: 'Sample.Periodic',
        measurand: 'Energy.Active.Import.Register',
        location: 'Outlet',
        unit: 'Wh',
      },
      {
        value: String(meter.powerW),
        context: 'Sample.Periodic',
        measurand: 'Power.Active.Import',
        location: 'Outlet',
        unit: 'W',
      },
    ],
  };
}

function check(condition, message) {
  if (!condition) fail(message);
}

async function call(method, params) {
  check(!disconnected, `${disconnected} before ${method}`);
  try {
    return await client.call(method, params);
  } catch (error) {
    fail(`${method} failed: ${error.name} ${error.rpcErrorCode ?? ''} ${error.message}`.trim());
  }
}

async function session() {
  await client.connect();
  report.protocol = client.protocol;
  check(client.protocol === 'ocpp1.6', `the CSMS chose subprotocol ${client.protocol}, not ocpp1.6`);

  const boot = await call('BootNotification', {
    chargePointVendor: 'NodeTest',
    chargePointModel: 'ocpp-rpc-2.2.1',
    firmwareVersion: '1.0.0',
  });
  report.boot = boot;
  check(boot.status === 'Accepted', `BootNotification answered ${boot.status}`);
  clock.set(boot.currentTime);
  await waitFor('GetConfiguration after the boot', () => report.configurationAsked.length > 0);
  await waitFor('a TxDefaultProfile after the boot', () =>
    report.profiles.some((p) => p.purpose === 'TxDefaultProfile'));

  const idTagInfo = (await call('Authorize', { idTag: args['id-tag'] })).idTagInfo;
  check(idTagInfo.status === 'Accepted', `Authorize answered ${idTagInfo.status}`);

  report.startedAt = clock.nowIso();
  // A TxProfile may come in the same read as the answer: its handler waits for this.
  transactionStarting = call('StartTransaction', {
    connectorId: CONNECTOR_ID,
    idTag: args['id-tag'],
    meterStart: meterStartWh,
    timestamp: report.startedAt,
  }).then((answer) => {
    check(answer.idTagInfo.status === 'Accepted', `StartTransaction answered ${answer.idTagInfo.status}`);
    report.transactionId = answer.transactionId;
    meter.atMs = Date.parse(report.startedAt);
    charging = true;
    meter.follow();
    return answer;
  });
  const started = await transactionStarting;

  await waitFor(`a TxProfile for transaction ${started.transactionId}`, () =>
    report.profiles.some((p) => p.purpose === 'TxProfile' && p.status === 'Accepted'));
  await waitFor('GetCompositeSchedule after the TxProfile', () => report.compositeSchedules.length > 0);

  for (let i = 0; i < meterValueCount; i += 1) {
    await sleep(meterIntervalMs);
    meter.follow();
    const at = clock.nowIso();
    const sent = { timestamp: at, energyWh: meter.readingWh(), powerW: meter.powerW, limitW: limitInForceW() };
    await call('MeterValues', {
      connectorId: CONNECTOR_ID,
      transactionId: started.transactionId,
      meterValue: [meterValue(at)],
    });
    report.meterValues.push(sent);
  }

  for (const [i, { frame }] of MALFORMED.entries()) {
    awaitedFrame = frame;
    client.sendRaw(frame);
    await waitFor(`a CALLERROR to the malformed frame ${frame}`, () => report.callErrors.length > i);
    check(!disconnected, `${disconnected} after the malformed frame ${frame}`);
  }
  awaitedFrame = null;
  const beat = await call('Heartbeat', {});
  report.heartbeatAfterMalformed = beat.currentTime;

  meter.follow();
  report.stoppedAt = clock.nowIso();
  report.meterStop = meter.readingWh();
  report.stopAnswer = await call('StopTransaction', {
    transactionId: started.transactionId,
    idTag: args['id-tag'],
    meterStop: report.meterStop,
    timestamp: report.stoppedAt,
    reason: 'EVDisconnected',
    transactionData: [meterValue(report.stoppedAt)],
  });
  charging = false;
  meter.follow();
  const txIds = new Set(report.profiles.filter((p) => p.purpose === 'TxProfile').map((p) => p.chargingProfileId));
  await waitFor('ClearChargingProfile of the TxProfile after StopTransaction', () =>
    report.cleared.some((c) => txIds.has(c.id)));
}

let failure = null;
try {
  await session();
  if (report.schemaViolations.length) {
    const first = report.schemaViolations[0];
    fail(`schema violation in ${first.frame} from the ${first.from}: ${first.error}`);
  }
  if (report.unexpectedCalls.length) {
    fail(`the CSMS sent ${report.unexpectedCalls.map((c) => c.method).join(', ')}, not handled`);
  }
  if (report.problems.length) fail(report.problems.join('; '));
  report.ok = true;
} catch (error) {
  failure = error instanceof Failure ? error.message : `${error.name}: ${error.message}`;
  if (report.schemaViolations.length && !failure.startsWith('schema violation')) {
    const first = report.schemaViolations[0];
    failure += `; schema violation in ${first.frame} from the ${first.from}: ${first.error}`;
  }
} finally {
  await client.close({ code: 1000, reason: 'done' }).catch(() => {});
}

if (failure) {
  process.stderr.write(`${failure}\n${JSON.stringify(report)}\n`);
  process.exitCode = 1;
} else {
  process.stdout.write(`${JSON.stringify(report)}\n`);
}
