export * from './mmio-registers';
export * from './status';
export * from './features';
export * from './device-ids';
export * from './split-ring';
export * from './notification';
export * from './blk';
export * from './console';
