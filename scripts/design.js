#!/usr/bin/env node
// The design's planner (shared/seed/dynamic-batching.md), transcribed to JavaScript as written,
// to time it against the `plan` example on the same file:
//
//   node scripts/design.js CLUSTERS.json > plan.json
//
// Two changes, each needed to run at all: `calculatePriority` gets the quality it reads (the
// design calls it before the quality exists, which gives NaN), and `rebalanceBatches`, which
// the design leaves undefined, returns the batches as they are. Reads the file whole with
// JSON.parse, plans, prints the batches (ids, strategy, estimated tokens) as JSON.
'use strict';
const fs = require('fs');

const config = { minBatchSize: 3, maxBatchSize: 8, targetTokensPerBatch: 3500, maxTotalCalls: 10, qualityThreshold: 0.5 };

const average = (xs) => xs.reduce((s, x) => s + x, 0) / xs.length;
const standardDeviation = (xs) => { const m = average(xs); return Math.sqrt(average(xs.map((x) => (x - m) ** 2))); };

function calculateClusterQuality(cluster) {
  const sizeFactor = cluster.size <= 10 ? cluster.size / 10 : cluster.size <= 30 ? 1.0 : Math.max(0.7, 1 - (cluster.size - 30) / 100);
  const performanceFactor = Math.min(cluster.avg_performance / 5, 1);
  const diversityFactor = Math.min(cluster.thread_sources.length / 5, 1);
  const performances = cluster.videos.map((v) => v.performance_ratio);
  const avgPerf = average(performances);
  const stdDev = standardDeviation(performances);
  const consistencyFactor = 1 - Math.min(stdDev / avgPerf, 0.5);
  return sizeFactor * 0.25 + performanceFactor * 0.35 + diversityFactor * 0.25 + consistencyFactor * 0.15;
}

function calculatePriority(cluster) {
  const widePriority = cluster.is_wide ? 1.5 : 1.0;
  const performanceBoost = cluster.avg_performance > 4 ? 1.3 : 1.0;
  return cluster.quality * widePriority * performanceBoost;
}

function estimateTokensForCluster(cluster) {
  return 200 + Math.min(cluster.size, 8) * 25;
}

function determineStrategy(clusters) {
  const totalClusters = clusters.length;
  const highQualityClusters = clusters.filter((c) => c.quality > 0.8).length;
  if (totalClusters <= 10) return { type: 'THOROUGH', batchSize: 3, videosPerCluster: 10, patternsPerCluster: '5-8' };
  if (totalClusters > 20 && highQualityClusters < 10) return { type: 'ADAPTIVE', batchSize: 'dynamic', videosPerCluster: 6, patternsPerCluster: '3-5' };
  if (totalClusters > 20 && highQualityClusters >= 10) return { type: 'EFFICIENT', batchSize: 6, videosPerCluster: 5, patternsPerCluster: '3-4' };
  return { type: 'BALANCED', batchSize: 5, videosPerCluster: 8, patternsPerCluster: '4-6' };
}

const createBatch = (clusters, strategy) => ({ clusters, strategy });

function createBatchesWithStrategy(clusters, strategy, config) {
  const batches = [];
  let currentBatch = [];
  let currentTokens = 0;
  for (const cluster of clusters) {
    const clusterTokens = cluster.estimatedTokens;
    const wouldExceedTokens = currentTokens + clusterTokens > config.targetTokensPerBatch;
    const wouldExceedSize = currentBatch.length >= (strategy.batchSize === 'dynamic' ? config.maxBatchSize : strategy.batchSize);
    if (currentBatch.length > 0 && (wouldExceedTokens || wouldExceedSize)) {
      if (currentBatch.length >= config.minBatchSize) batches.push(createBatch(currentBatch, strategy));
      else if (batches.length > 0) batches[batches.length - 1].clusters.push(...currentBatch);
      currentBatch = [];
      currentTokens = 0;
    }
    currentBatch.push(cluster);
    currentTokens += clusterTokens;
    if (batches.length >= config.maxTotalCalls - 1) break;
  }
  if (currentBatch.length > 0) {
    if (currentBatch.length >= config.minBatchSize || batches.length === 0) batches.push(createBatch(currentBatch, strategy));
    else if (batches.length > 0) batches[batches.length - 1].clusters.push(...currentBatch);
  }
  return optimizeBatches(batches, config);
}

const rebalanceBatches = (batches) => batches; // undefined in the design

function optimizeBatches(batches, config) {
  const avgSize = batches.reduce((sum, b) => sum + b.clusters.length, 0) / batches.length;
  const needsRebalancing = batches.some((b) => b.clusters.length > avgSize * 1.5 || b.clusters.length < avgSize * 0.5);
  if (needsRebalancing && batches.length > 2) return rebalanceBatches(batches, config);
  return batches;
}

function createDynamicBatches(clusters, config) {
  const scoredClusters = clusters
    .map((cluster) => {
      const quality = calculateClusterQuality(cluster);
      return { ...cluster, quality, estimatedTokens: estimateTokensForCluster(cluster), priority: calculatePriority({ ...cluster, quality }) };
    })
    .filter((c) => c.quality >= config.qualityThreshold)
    .sort((a, b) => b.priority - a.priority);
  const strategy = determineStrategy(scoredClusters);
  return createBatchesWithStrategy(scoredClusters, strategy, config);
}

const clusters = JSON.parse(fs.readFileSync(process.argv[2] || '/dev/stdin', 'utf8'));
const batches = createDynamicBatches(clusters, config);
process.stdout.write(JSON.stringify(batches.map((b) => ({
  strategy: b.strategy.type,
  clusters: b.clusters.map((c) => c.id),
  estimatedTokens: b.clusters.reduce((s, c) => s + c.estimatedTokens, 0),
})), null, 2) + '\n');
