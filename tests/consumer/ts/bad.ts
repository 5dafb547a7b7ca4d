// Wrong option types must not compile.
import { qysSdk } from 'qys-sdk-wasm';

new qysSdk('/qys/proxy', { timeoutMs: '15000' });
new qysSdk('/qys/proxy').personalAuth({ mode: 'IVS', contact: '13700000044' });
new qysSdk('/qys/proxy').personalSign('1', '13700000044', { signSuccessCb: 'done' });
new qysSdk('/qys/proxy').enterpriseAuth({ companyName: '甲', companyAuthBean: { closeButton: true } });
