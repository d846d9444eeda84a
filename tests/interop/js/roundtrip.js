// kafkajs against a Kafka listener: create a topic (admin), produce N keyed records with a
// header, consume them in a consumer group, commit, and print one JSON line of what it saw.
// usage: node roundtrip.js BOOTSTRAP TOPIC GROUP N
const { Kafka, logLevel } = require("kafkajs");

async function main() {
  const [bootstrap, topic, group, nArg] = process.argv.slice(2);
  const n = Number(nArg);
  const kafka = new Kafka({ clientId: "odradek-interop", brokers: [bootstrap], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
  const listed = await admin.listTopics();
  await admin.disconnect();

  const producer = kafka.producer();
  await producer.connect();
  const messages = [];
  for (let i = 0; i < n; i++) messages.push({ key: `k${i}`, value: `v${i}`, headers: { h: `x${i}` } });
  await producer.send({ topic, messages, acks: -1 });
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, rebalanceTimeout: 10000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`saw ${seen.length} of ${n} records`)), 30000);
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        seen.push({ partition, offset: Number(message.offset), key: message.key.toString(),
                    value: message.value.toString(), h: message.headers.h.toString() });
        if (seen.length === n) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.commitOffsets([]);   // eachMessage commits as it goes; make sure the last ones are in
  await consumer.disconnect();
  const offsets = await (async () => {
    const a = kafka.admin(); await a.connect();
    const r = await a.fetchOffsets({ groupId: group, topics: [topic] }); await a.disconnect(); return r;
  })();
  console.log(JSON.stringify({ listed: listed.includes(topic), seen, offsets }));
}

main().then(() => process.exit(0), (e) => { console.error(e && e.stack || e); process.exit(1); });
