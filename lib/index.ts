export * from './errors';
export * from './platform';
export * from './spec';
export * from './transport';
export * from './queue';
export * from './devices';
export { resetDevicesOnSignals, type ResetOnSignalsOptions, type ResetSignal } from './transport/exit-reset';
