// An integrator's app: imports the package by name, with no init and no bundler plugin.
import { qysSdk } from 'qys-sdk-wasm';

const sdk = new qysSdk('/qys/proxy', { query: { from: 'consumer' } });
const events = document.getElementById('events');
function record(event, payload) {
  const li = document.createElement('li');
  li.dataset.event = event;
  li.textContent = JSON.stringify(payload ?? null);
  events.append(li);
}
document.getElementById('sign').addEventListener('click', () => {
  sdk.personalSign('2603417854124281870', '13700000044', {
    signSuccessCb: (result) => record('signSuccess', result),
    authFailCb: () => record('authFail'),
  }).then((frame) => {
    frame.id = 'qys-frame';
    document.getElementById('frame').append(frame);
  }, (error) => record('error', { kind: error.kind, message: error.message }));
});
document.body.dataset.ready = 'true';
