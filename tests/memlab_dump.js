// Reads a .heapsnapshot with memlab's parser (@memlab/core, found through NODE_PATH),
// computes dominators and retained sizes as memlab does, and writes every node with
// its edges as JSON: node memlab_dump.js INPUT.heapsnapshot OUTPUT.json
const fs = require('fs');
const {utils, TraceFinder} = require('@memlab/core');

(async () => {
  const [input, output] = process.argv.slice(2);
  const snapshot = await utils.getSnapshotFromFile(input, {buildNodeIdIndex: true});
  new TraceFinder().calculateAllNodesRetainedSizes(snapshot);
  const nodes = [];
  snapshot.nodes.forEach(node => {
    nodes.push({
      id: node.id,
      type: node.type,
      name: node.name,
      self_size: node.self_size,
      retained_size: node.retainedSize,
      edges: node.references.map(edge => [edge.type, edge.name_or_index, edge.toNode.id]),
    });
  });
  fs.writeFileSync(output, JSON.stringify(nodes));
})().catch(error => {
  console.error(error);
  process.exit(1);
});
