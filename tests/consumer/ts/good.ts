// A typed integrator: every option, parameter and callback as the generated .d.ts describes them.
import { qysSdk, type QysError, type PersonalUserInfo, type CompanyInfo } from 'qys-sdk-wasm';

const sdk = new qysSdk('/qys/proxy', { query: { a: 1, token: 'ab1234' }, timeoutMs: 15000, debug: false });
const plain = new qysSdk('/qys/proxy');

async function flows(): Promise<HTMLElement[]> {
  const sign: HTMLElement = await sdk.personalSign('2603417854124281870', '13700000044', {
    signSuccessCb: (result) => console.log(result.contractId?.length),
    authFailCb: () => console.log('exit'),
  });
  const auth = await sdk.personalAuth(
    { mode: 'BANK', contact: '13700000044', bankNo: '6222', modifyFields: ['BANKNO', 'USERNAME'], manual: true },
    { authSuccessCb: (info: PersonalUserInfo) => console.log(info.username, info.cardNo) },
  );
  const company = await sdk.enterpriseAuth(
    { companyName: '甲', companyAuthBean: { applicant: { name: 'A', contact: 'a@b.cn', contactType: 'EMAIL' }, closeButton: false } },
    { authSuccessCb: (info: CompanyInfo) => console.log(info.registerNo), authFailCb: () => {} },
  );
  const enterprise = await plain.enterpriseSign(2603417854124281870n, '13800000055');
  return [sign, auth, company, enterprise];
}

flows().catch((e: QysError) => {
  const kind: 'invalidArgument' | 'network' | 'timeout' | 'http' | 'protocol' | 'platform' = e.kind;
  const code: number | null = e.code;
  console.log(kind, code, e.param, e.message);
});
sdk.destroy();
